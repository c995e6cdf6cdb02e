"""The card API on both engines: adding a bank card as a token (green, step-up, red),
listing cards masked, suspend, resume, delete, and the default card; never a card
number in an answer."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from milletpay.banks import CardStatus, IssuedCard
from milletpay.cards import (
    STEP_UP_ATTEMPTS_MAX,
    Expiry,
    TokenDomain,
    open_for_phone,
    seal_card_for_tsp,
)
from milletpay.cards.luk import DEFAULT_LUK_LIMITS, LukCode, LukUnknown
from milletpay.cards.tsp import STEP_UP_SENDS_PER_CARD_MAX
from milletpay.emv import crypto
from milletpay.emv.profiles import profile

from .wallet_world import Person, World, bound_phone

CARD_PIN = "314159"
DEVICE = "phone-cards-1"
OTHER_PHONE = "+8613900139000"


@dataclass
class Holder:
    """A wallet user with a bound phone, who is also a customer of the banks."""

    person: Person
    device_id: str

    @property
    def phone(self) -> str:
        return "+86" + self.person.phone


@pytest.fixture
def holder(world: World) -> Iterator[Holder]:
    person = world.person()
    bound_phone(world, person, DEVICE)
    yield Holder(person, DEVICE)


def issue_card(
    world: World, phone_on_file: str | None, code: str = "ICBC", product: str = "debit"
) -> IssuedCard:
    """A new customer of bank `code` with `phone_on_file`, and their card."""
    bank = world.banks.bank(code)
    customer = bank.open_customer("Card Holder", phone=phone_on_file)
    account = bank.open_account(customer, product)
    return bank.issue_card(account.account.id, pin=CARD_PIN)


def sealed(world: World, holder: Holder, card: IssuedCard, cvn2: str | None = None) -> str:
    """The phone's side: the card sealed to the key the API gives."""
    answer = world.client.get("/v1/me/cards/tsp-key", headers=holder.person.headers)
    assert answer.status_code == 200, answer.text
    text = answer.json()["public_key"]
    key = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    expiry = Expiry(2000 + int(card.expiry_yymm[:2]), int(card.expiry_yymm[2:]))
    return seal_card_for_tsp(key, card.pan, expiry, card.cvn2 if cvn2 is None else cvn2)


def add(
    world: World,
    holder: Holder,
    card: IssuedCard,
    *,
    domain: str = "contactless",
    cvn2: str | None = None,
    device_id: str | None = None,
) -> httpx.Response:
    body = {
        "device_id": device_id or holder.device_id,
        "domain": domain,
        "envelope": sealed(world, holder, card, cvn2),
    }
    answer = world.client.post("/v1/me/cards", json=body, headers=holder.person.headers)
    assert card.pan not in answer.text
    return answer


def added(world: World, holder: Holder, card: IssuedCard, **kw: Any) -> dict[str, Any]:
    answer = add(world, holder, card, **kw)
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def cards(world: World, holder: Holder) -> list[dict[str, Any]]:
    answer = world.client.get("/v1/me/cards", headers=holder.person.headers)
    assert answer.status_code == 200, answer.text
    return list(answer.json()["items"])


def call(world: World, holder: Holder, method: str, path: str, **kw: Any) -> httpx.Response:
    return world.client.request(method, path, headers=holder.person.headers, **kw)


def step_up_code(world: World, phone: str) -> str:
    text = world.sms.messages_to(phone)[-1].text
    return next(word for word in text.split() if word.isdigit() and len(word) == 6)


# -- the TSP key ----------------------------------------------------------------------


def test_the_tsp_key_is_the_token_services_and_needs_a_session(
    world: World, holder: Holder
) -> None:
    answer = call(world, holder, "GET", "/v1/me/cards/tsp-key")
    text = answer.json()["public_key"]
    key = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    assert key == world.client.app.state.tsp.public_key()  # type: ignore[attr-defined]
    assert len(key) == 65 and answer.json()["curve"] == "P-256"
    assert world.client.get("/v1/me/cards/tsp-key").status_code == 401


# -- adding a card ----------------------------------------------------------------------


def test_a_card_with_the_users_phone_on_file_is_active_at_once(
    world: World, holder: Holder
) -> None:
    card = issue_card(world, holder.phone)
    shown = added(world, holder, card)
    assert shown["state"] == "active"
    assert shown["card_masked"] == card.pan_masked
    assert (shown["bank_code"], shown["bank_name"]) == (
        "ICBC",
        "Industrial and Commercial Bank of China",
    )
    assert (shown["domain"], shown["device_id"]) == ("contactless", DEVICE)
    assert len(shown["token_last4"]) == 4 and shown["token_last4"] != card.pan[-4:]
    assert shown["default"] is False and shown["suspended_by"] == []
    assert not [m for m in world.sms.outbox if "add your card" in m.text]
    assert cards(world, holder) == [shown]


def test_a_phone_mismatch_waits_for_the_code_texted_to_the_phone_on_file(
    world: World, holder: Holder
) -> None:
    card = issue_card(world, OTHER_PHONE)
    answer = add(world, holder, card)
    assert answer.status_code == 202, answer.text
    waiting = answer.json()
    assert waiting["state"] == "inactive"
    assert waiting["step_up"] == {"channel": "sms", "phone_masked": "+86139****9000"}
    path = f"/v1/me/cards/{waiting['id']}/step-up"

    wrong = call(world, holder, "POST", path, json={"code": "000000x"})
    assert wrong.status_code == 400
    error = wrong.json()["error"]
    assert (error["code"], error["field"]) == ("step_up_code_wrong", "code")
    assert f"{STEP_UP_ATTEMPTS_MAX - 1} tries left" in error["message"]

    right = call(world, holder, "POST", path, json={"code": step_up_code(world, OTHER_PHONE)})
    assert right.status_code == 200, right.text
    assert right.json()["state"] == "active" and "step_up" not in right.json()
    again = call(world, holder, "POST", path, json={"code": "123456"})
    assert (again.status_code, again.json()["error"]["code"]) == (409, "step_up_not_pending")


def test_too_many_wrong_codes_remove_the_card(world: World, holder: Holder) -> None:
    waiting = add(world, holder, issue_card(world, OTHER_PHONE)).json()
    path = f"/v1/me/cards/{waiting['id']}/step-up"
    right = step_up_code(world, OTHER_PHONE)
    wrong = "000000" if right != "000000" else "111111"
    answers = [call(world, holder, "POST", path, json={"code": wrong}) for _ in range(5)]
    assert [a.status_code for a in answers] == [400] * (STEP_UP_ATTEMPTS_MAX - 1) + [410]
    assert answers[-1].json()["error"]["code"] == "step_up_attempts_exceeded"
    assert cards(world, holder) == []


@pytest.mark.parametrize(
    ("spoil", "reason"),
    [("cvn2", "cvn2_mismatch"), ("blocked", "card_blocked")],
)
def test_a_red_idv_is_a_decline_naming_the_issuers_reason(
    world: World, holder: Holder, spoil: str, reason: str
) -> None:
    card = issue_card(world, holder.phone)
    cvn2 = None
    if spoil == "cvn2":
        cvn2 = "000" if card.cvn2 != "000" else "111"
    else:
        world.banks.bank("ICBC").set_card_status(card.card_id, CardStatus.BLOCKED)
    answer = add(world, holder, card, cvn2=cvn2)
    assert answer.status_code == 402, answer.text
    error = answer.json()["error"]
    assert (error["code"], error["reason"], error["field"]) == ("idv_declined", reason, "envelope")
    assert cards(world, holder) == []


def test_a_card_no_partner_bank_issues_is_declined(world: World, holder: Holder) -> None:
    from cards.pans import VISA

    public_key = world.client.app.state.tsp.public_key()  # type: ignore[attr-defined]
    body = {
        "device_id": DEVICE,
        "domain": "in_app",
        "envelope": seal_card_for_tsp(public_key, VISA, Expiry(2030, 1), "123"),
    }
    answer = call(world, holder, "POST", "/v1/me/cards", json=body)
    assert answer.status_code == 402
    assert answer.json()["error"]["code"] == "issuer_not_partner"
    assert VISA not in answer.text


def test_the_same_card_twice_on_one_phone_and_domain_is_a_conflict(
    world: World, holder: Holder
) -> None:
    card = issue_card(world, holder.phone)
    first = added(world, holder, card)
    again = add(world, holder, card)
    assert (again.status_code, again.json()["error"]["code"]) == (409, "token_exists")
    other_domain = added(world, holder, card, domain="ecommerce")
    assert {c["id"] for c in cards(world, holder)} == {first["id"], other_domain["id"]}


def test_a_phone_not_bound_to_the_user_is_not_found_and_nothing_is_stored(
    world: World, holder: Holder
) -> None:
    answer = add(world, holder, issue_card(world, holder.phone), device_id="phone-elsewhere")
    assert answer.status_code == 404
    assert answer.json()["error"] == {
        "code": "device_not_found",
        "message": "no bound device 'phone-elsewhere'",
        "field": "device_id",
    }
    assert cards(world, holder) == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"device_id": DEVICE, "domain": "contactless", "envelope": "{}"}, "envelope"),
        ({"device_id": DEVICE, "domain": "by_fax", "envelope": "{}"}, "domain"),
        ({"device_id": DEVICE, "domain": "contactless", "envelope": "x" * 2000}, "envelope"),
    ],
)
def test_a_request_the_tsp_cannot_read_is_422_naming_the_field(
    world: World, holder: Holder, body: dict[str, str], field: str
) -> None:
    answer = call(world, holder, "POST", "/v1/me/cards", json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["field"] == field
    assert cards(world, holder) == []


# -- lifecycle ------------------------------------------------------------------------


def test_suspend_and_resume_by_the_cardholder(world: World, holder: Holder) -> None:
    token_id = added(world, holder, issue_card(world, holder.phone))["id"]
    path = f"/v1/me/cards/{token_id}/suspension"
    suspended = call(world, holder, "POST", path)
    assert suspended.status_code == 200, suspended.text
    assert (suspended.json()["state"], suspended.json()["suspended_by"]) == (
        "suspended",
        ["cardholder"],
    )
    twice = call(world, holder, "POST", path)
    assert (twice.status_code, twice.json()["error"]["code"]) == (409, "token_transition_refused")
    resumed = call(world, holder, "DELETE", path)
    assert resumed.status_code == 200 and resumed.json()["state"] == "active"
    not_suspended = call(world, holder, "DELETE", path)
    assert not_suspended.status_code == 409


def test_the_cardholder_cannot_lift_a_lost_phones_suspension(world: World, holder: Holder) -> None:
    token_id = added(world, holder, issue_card(world, holder.phone))["id"]
    tsp = world.client.app.state.tsp  # type: ignore[attr-defined]
    user_id = tsp.token(int(token_id, 16)).user_id
    assert len(tsp.on_device_lost(user_id, DEVICE).changed) == 1
    (shown,) = cards(world, holder)
    assert (shown["state"], shown["suspended_by"]) == ("suspended", ["device"])
    answer = call(world, holder, "DELETE", f"/v1/me/cards/{token_id}/suspension")
    assert answer.status_code == 409
    assert "only device can resume it" in answer.json()["error"]["message"]


def test_a_deleted_card_leaves_the_list_and_stays_deleted(world: World, holder: Holder) -> None:
    token_id = added(world, holder, issue_card(world, holder.phone))["id"]
    assert call(
        world, holder, "PUT", "/v1/me/cards/default", json={"token_id": token_id}
    ).is_success
    deleted = call(world, holder, "DELETE", f"/v1/me/cards/{token_id}")
    assert deleted.status_code == 200
    assert (deleted.json()["state"], deleted.json()["default"]) == ("deleted", False)
    assert cards(world, holder) == []
    again = call(world, holder, "DELETE", f"/v1/me/cards/{token_id}")
    assert (again.status_code, again.json()["error"]["code"]) == (409, "token_transition_refused")
    resumed = call(world, holder, "POST", f"/v1/me/cards/{token_id}/suspension")
    assert resumed.status_code == 409


# -- the default card -----------------------------------------------------------------


def test_the_default_card_is_one_per_user_and_shown_in_the_list(
    world: World, holder: Holder
) -> None:
    first = added(world, holder, issue_card(world, holder.phone))
    second = added(world, holder, issue_card(world, holder.phone, "CCB"))
    assert second["bank_name"] == "China Construction Bank"
    for chosen in (first, second):
        answer = call(world, holder, "PUT", "/v1/me/cards/default", json={"token_id": chosen["id"]})
        assert answer.status_code == 200, answer.text
        assert answer.json()["default"] is True
        shown = {c["id"]: c["default"] for c in cards(world, holder)}
        assert shown == {first["id"]: chosen is first, second["id"]: chosen is second}


def test_only_an_active_card_can_be_the_default(world: World, holder: Holder) -> None:
    token_id = added(world, holder, issue_card(world, holder.phone))["id"]
    call(world, holder, "POST", f"/v1/me/cards/{token_id}/suspension")
    answer = call(world, holder, "PUT", "/v1/me/cards/default", json={"token_id": token_id})
    assert answer.status_code == 409
    assert (answer.json()["error"]["code"], answer.json()["error"]["field"]) == (
        "card_not_active",
        "token_id",
    )
    assert [c["default"] for c in cards(world, holder)] == [False]


@pytest.mark.parametrize("token_id", ["0" * 32, "not-an-id", "F" * 32])
def test_an_unknown_or_malformed_token_id_is_not_found(
    world: World, holder: Holder, token_id: str
) -> None:
    for method, path, body in (
        ("POST", f"/v1/me/cards/{token_id}/step-up", {"code": "123456"}),
        ("POST", f"/v1/me/cards/{token_id}/suspension", None),
        ("DELETE", f"/v1/me/cards/{token_id}/suspension", None),
        ("DELETE", f"/v1/me/cards/{token_id}", None),
        ("PUT", "/v1/me/cards/default", {"token_id": token_id}),
    ):
        answer = call(world, holder, method, path, json=body)
        assert (answer.status_code, answer.json()["error"]["code"]) == (404, "token_not_found")


def test_every_domain_can_be_added(world: World, holder: Holder) -> None:
    card = issue_card(world, holder.phone, product="credit")
    for domain in TokenDomain:
        assert added(world, holder, card, domain=str(domain))["domain"] == str(domain)
    assert len({c["id"] for c in cards(world, holder)}) == len(TokenDomain)
    assert {c["card_masked"] for c in cards(world, holder)} == {card.pan_masked}


# -- the phone the tokens live on ---------------------------------------------------------


def test_a_phone_reported_lost_suspends_its_cards_until_found(world: World, holder: Holder) -> None:
    token_id = added(world, holder, issue_card(world, holder.phone))["id"]
    lost = call(world, holder, "POST", f"/v1/me/devices/{DEVICE}/loss")
    assert lost.status_code == 200, lost.text
    assert lost.json() == {"device_id": DEVICE, "tokens_suspended": 1}
    (shown,) = cards(world, holder)
    assert (shown["id"], shown["state"], shown["suspended_by"]) == (
        token_id,
        "suspended",
        ["device"],
    )
    found = call(world, holder, "DELETE", f"/v1/me/devices/{DEVICE}/loss")
    assert found.json() == {"device_id": DEVICE, "tokens_resumed": 1}
    assert cards(world, holder)[0]["state"] == "active"


def test_unbinding_the_phone_deletes_its_cards(world: World, holder: Holder) -> None:
    added(world, holder, issue_card(world, holder.phone))
    unbound = call(world, holder, "DELETE", f"/v1/me/devices/{DEVICE}")
    assert unbound.status_code == 200, unbound.text
    assert (unbound.json()["status"], unbound.json()["tokens_deleted"]) == ("unbound", 1)
    assert cards(world, holder) == []
    again = call(world, holder, "POST", f"/v1/me/devices/{DEVICE}/loss")
    assert (again.status_code, again.json()["error"]["field"]) == (404, "device_id")


def test_another_users_phone_cannot_be_reported_lost(world: World, holder: Holder) -> None:
    token_id = added(world, holder, issue_card(world, holder.phone))["id"]
    other = world.person()
    for method in ("POST", "DELETE"):
        answer = world.client.request(
            method, f"/v1/me/devices/{DEVICE}/loss", headers=other.headers
        )
        assert answer.status_code == 404
    (shown,) = cards(world, holder)
    assert (shown["id"], shown["state"]) == (token_id, "active")


# -- limited-use keys -------------------------------------------------------------------


def phone_key() -> tuple[ec.EllipticCurvePrivateKey, str]:
    """The phone's one-time key pair for a key delivery; the public half as base64url."""
    private = ec.generate_private_key(ec.SECP256R1())
    point = private.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return private, base64.urlsafe_b64encode(point).rstrip(b"=").decode()


def grant_keys(world: World, holder: Holder, card_id: str, **body: Any) -> httpx.Response:
    private, public = phone_key()
    request = {"device_id": holder.device_id, "public_key": public, **body}
    answer = call(world, holder, "POST", f"/v1/me/cards/{card_id}/keys", json=request)
    if answer.status_code == 201:
        opened = open_for_phone(private, answer.json()["sealed"])
        answer.extensions["opened"] = opened
    return answer


def tap_data(atc: int) -> dict[str, bytes]:
    """One tap's data elements, at ATC `atc` (the minimum data set and 9F10)."""
    return {
        "9F02": (2_500).to_bytes(6, "big"),
        "9F03": bytes(6),
        "9F1A": bytes.fromhex("0156"),
        "95": bytes(5),
        "5F2A": bytes.fromhex("0156"),
        "9A": bytes.fromhex("261126"),
        "9C": b"\x00",
        "9F37": bytes.fromhex("0BADF00D"),
        "82": bytes.fromhex("1800"),
        "9F36": atc.to_bytes(2, "big"),
        "9F10": bytes.fromhex("07010103A00000"),
    }


def test_the_phone_gets_a_limited_use_key_only_it_can_open(world: World, holder: Holder) -> None:
    card = added(world, holder, issue_card(world, holder.phone))
    answer = grant_keys(world, holder, card["id"])
    assert answer.status_code == 201, answer.text
    grant = answer.json()
    assert (grant["luk_index"], grant["atc_first"], grant["atc_last"]) == (1, 1, 20)
    assert grant["uses_max"] == 10 and grant["profile"] == "unionpay-cvn01"
    assert grant["expires_at_ns"] - grant["issued_at_ns"] == 3 * 86_400 * 10**9
    opened = answer.extensions["opened"]
    assert opened["luk"] not in answer.text  # the key is only inside the envelope
    state = world.client.app.state  # type: ignore[attr-defined]
    token = state.tsp.token(int(card["id"], 16))
    assert opened["token_number"] == token.number
    assert opened["token_number"][-4:] == card["token_last4"]
    assert (opened["token_expiry"], opened["psn"]) == (card["token_expiry"], 1)
    # The phone's cryptogram under that key is the one the token service accepts.
    data = tap_data(1)
    arqc = crypto.generate_ac(profile(grant["profile"]), bytes.fromhex(opened["luk"]), data)
    assert state.luks.verify(token, arqc, data).ok


def test_asking_again_retires_the_key_before(world: World, holder: Holder) -> None:
    card = added(world, holder, issue_card(world, holder.phone))
    first = grant_keys(world, holder, card["id"])
    second = grant_keys(world, holder, card["id"])
    assert second.json()["luk_index"] == 2 and second.json()["atc_first"] == 21
    state = world.client.app.state  # type: ignore[attr-defined]
    token = state.tsp.token(int(card["id"], 16))
    data = tap_data(1)
    old = bytes.fromhex(first.extensions["opened"]["luk"])
    arqc = crypto.generate_ac(profile("unionpay-cvn01"), old, data)
    assert state.luks.verify(token, arqc, data).code is LukCode.LUK_RETIRED


def test_keys_go_only_to_the_phone_the_card_is_on(world: World, holder: Holder) -> None:
    card = added(world, holder, issue_card(world, holder.phone))
    bound_phone(world, holder.person, "phone-cards-2")
    answer = grant_keys(world, holder, card["id"], device_id="phone-cards-2")
    assert (answer.status_code, answer.json()["error"]["code"]) == (403, "device_mismatch")
    answer = grant_keys(world, holder, card["id"], device_id="phone-never-bound")
    assert (answer.status_code, answer.json()["error"]["code"]) == (404, "device_not_found")


def test_no_keys_for_a_card_that_is_not_active(world: World, holder: Holder) -> None:
    card = added(world, holder, issue_card(world, holder.phone))
    assert call(world, holder, "POST", f"/v1/me/cards/{card['id']}/suspension").is_success
    answer = grant_keys(world, holder, card["id"])
    assert (answer.status_code, answer.json()["error"]["code"]) == (409, "token_not_active")
    waiting = add(world, holder, issue_card(world, OTHER_PHONE), domain="in_app").json()
    answer = grant_keys(world, holder, waiting["id"])
    assert (answer.status_code, answer.json()["error"]["code"]) == (409, "token_not_active")


@pytest.mark.parametrize(
    "public_key",
    ["not base64 !", base64.urlsafe_b64encode(b"\x04" + bytes(64)).decode(), "AAAA"],
)
def test_a_phone_key_that_is_no_p256_point_is_422(
    world: World, holder: Holder, public_key: str
) -> None:
    card = added(world, holder, issue_card(world, holder.phone))
    answer = grant_keys(world, holder, card["id"], public_key=public_key)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["field"] == "public_key"
    state = world.client.app.state  # type: ignore[attr-defined]
    token = state.tsp.token(int(card["id"], 16))
    with pytest.raises(LukUnknown):  # nothing was granted
        state.luks.replenish(token)


def test_a_card_gets_a_bounded_number_of_keys_a_day(world: World, holder: Holder) -> None:
    card = added(world, holder, issue_card(world, holder.phone))
    for _ in range(DEFAULT_LUK_LIMITS.grants_per_day_max):
        assert grant_keys(world, holder, card["id"]).status_code == 201
    answer = grant_keys(world, holder, card["id"])
    assert (answer.status_code, answer.json()["error"]["code"]) == (429, "luk_grants_exceeded")


def test_a_card_that_had_its_codes_today_is_429(world: World, holder: Holder) -> None:
    card = issue_card(world, OTHER_PHONE)
    for _ in range(STEP_UP_SENDS_PER_CARD_MAX):
        assert add(world, holder, card).status_code == 202
    answer = add(world, holder, card)
    assert (answer.status_code, answer.json()["error"]["code"]) == (429, "step_up_limit_reached")
