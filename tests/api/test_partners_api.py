"""A partner payment provider asks a user's bound phone to approve the partner's own
payment with Millet Pay's device key, over the HTTP API, on both engines."""

from __future__ import annotations

import json
import uuid
from typing import Any

from milletpay.api.partners import partner_api_key
from milletpay.core.keyring import KeyRing
from milletpay.sim.phone import SimulatedPhone

from .wallet_world import Person, World, bound_phone

ALIPAY = "alipay.example"
ALIPAY_ORIGIN = "https://alipay.example"
MILLET_ORIGIN = "https://pay.millet.example"


def _key(world: World, partner_id: str = ALIPAY) -> dict[str, str]:
    keyring = world.client.app.state.keyring  # type: ignore[attr-defined]
    return {"Authorization": f"Bearer {partner_api_key(keyring, partner_id)}"}


def _payment(person: Person, payment_id: str, amount_fen: int = 1_999) -> dict[str, Any]:
    return {
        "phone": person.phone,
        "payment_id": payment_id,
        "payee": "taobao-shop-7",
        "amount_fen": amount_fen,
    }


def _approve(
    world: World, phone: SimulatedPhone, payment: dict[str, Any], origin: str = ALIPAY_ORIGIN
) -> Any:
    body = {**payment, "device_id": phone.device_id}
    options = world.client.post("/v1/partners/quick-pay/challenges", json=body, headers=_key(world))
    assert options.status_code == 201, options.text
    assert phone.touch("right thumb")
    assertion = phone.get_assertion(json.dumps(options.json()), origin)
    assert assertion is not None
    return json.loads(assertion)


def _submit(world: World, payment: dict[str, Any], assertion: Any, **headers: str) -> Any:
    return world.client.post(
        "/v1/partners/quick-pay/approvals",
        json={**payment, "assertion": assertion},
        headers=headers or _key(world),
    )


def test_a_partner_gets_its_payment_approved_by_the_bound_phone_once(world: World) -> None:
    alice = world.person()
    phone = bound_phone(world, alice, "phone-a")
    payment = _payment(alice, "order-1")
    assertion = _approve(world, phone, payment)
    approved = _submit(world, payment, assertion)
    assert approved.status_code == 201, approved.text
    assert approved.json()["approved"] is True
    assert approved.json()["device_id"] == "phone-a"
    replayed = _submit(world, payment, assertion)
    assert replayed.status_code == 403
    assert replayed.json()["error"]["code"] == "challenge_used"


def test_an_approval_is_for_that_payment_from_the_partners_origin_only(world: World) -> None:
    alice = world.person()
    phone = bound_phone(world, alice, "phone-a")
    payment = _payment(alice, "order-2")
    other_amount = _submit(world, {**payment, "amount_fen": 2_000}, _approve(world, phone, payment))
    assert other_amount.status_code == 403
    assert other_amount.json()["error"]["code"] == "payment_mismatch"
    on_millets_origin = _approve(world, phone, payment, origin=MILLET_ORIGIN)
    refused = _submit(world, payment, on_millets_origin)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "assertion_invalid"


def test_a_partners_approval_cannot_move_wallet_money(world: World) -> None:
    """The challenge names the partner's payment, namespaced by the partner: presented to
    the wallet as the approval of a P2P transfer, it is refused and nothing moves."""
    alice, bob = world.person(), world.person()
    assert world.top_up(alice, 10_000).status_code == 201
    phone = bound_phone(world, alice, "phone-a")
    key = uuid.uuid4().hex
    payment = {
        "phone": alice.phone,
        "payment_id": key,
        "payee": f"p2p:+86{bob.phone}",
        "amount_fen": 5_000,
    }
    assertion = _approve(world, phone, payment)
    body = {"recipient_phone": bob.phone, "amount_fen": 5_000, "quick_pay_assertion": assertion}
    paid = world.post("/v1/me/p2p-transfers", alice, body, key)
    assert paid.status_code == 403, paid.text
    assert world.balance(alice) == 10_000
    assert world.balance(bob) == 0


def test_partners_must_sign_in_with_their_own_key(world: World) -> None:
    alice = world.person()
    phone = bound_phone(world, alice, "phone-a")
    body = {**_payment(alice, "order-3"), "device_id": phone.device_id}
    for headers in (
        {},
        {"Authorization": "Bearer alipay.example.not-the-key"},
        {"Authorization": f"Bearer {_key(world)['Authorization'][7:]}x"},
        alice.headers,  # a user's session is not a partner's key
    ):
        answer = world.client.post("/v1/partners/quick-pay/challenges", json=body, headers=headers)
        assert answer.status_code == 401, headers
    # A key made under another key ring is not this platform's.
    foreign = partner_api_key(KeyRing.generate(), ALIPAY)
    answer = world.client.post(
        "/v1/partners/quick-pay/challenges",
        json=body,
        headers={"Authorization": f"Bearer {foreign}"},
    )
    assert answer.status_code == 401


def test_unknown_phones_and_devices_are_404_naming_the_field(world: World) -> None:
    alice = world.person()
    bound_phone(world, alice, "phone-a")
    body = {**_payment(alice, "order-4"), "device_id": "phone-a"}
    unknown_phone = world.client.post(
        "/v1/partners/quick-pay/challenges",
        json={**body, "phone": "13999999999"},
        headers=_key(world),
    )
    assert (unknown_phone.status_code, unknown_phone.json()["error"]["field"]) == (404, "phone")
    unknown_device = world.client.post(
        "/v1/partners/quick-pay/challenges",
        json={**body, "device_id": "phone-z"},
        headers=_key(world),
    )
    assert unknown_device.status_code == 404
    assert unknown_device.json()["error"]["field"] == "device_id"
