"""A user can never see or move another user's money.

Two users, A and B, are set up in full (wallet, linked bank account, money, PIN, bound
phone, history, a bank card added as a token and another waiting for its step-up code).
Every route that takes an id of something a user owns (a path
parameter, or a body field: bank account, device, credential, quick-pay assertion,
idempotency key, cursor, phone) is called as A with B's ids, and must refuse (404 or
403) and leave B exactly as B was: profile, balance, devices, bank accounts, history and
the money at B's bank.

`test_every_v1_route_is_covered` reads the app's routes: a route under /v1 that is
neither in `CASES` nor in `TAKES_NO_FOREIGN_ID` (with the reason) fails it, so a new
endpoint is tried with another user's ids before it ships.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastapi.routing
import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

from milletpay.api import create_app
from milletpay.api.partners import partner_api_key
from milletpay.banks import Banks, GeneratedBankKeys
from milletpay.banks.keys import issuer_bins
from milletpay.cards import Expiry, seal_card_for_tsp
from milletpay.core.clock import ManualClock
from milletpay.core.keyring import KeyRing
from milletpay.emv.keys import IssuerKeyStore
from milletpay.identity import PIN_HASHING_FAST, SimulatedSms
from milletpay.sim.phone import SimulatedPhone
from milletpay.wallet import SimulatedBankGateway

from .members import BANK, FINGER, ORIGIN, PIN, Member, Platform

REFUSED = frozenset({403, 404})
#: The phone on file at B's second bank: not B's wallet phone, so B's card there waits.
B_OTHER_PHONE = "+8613900139000"


@dataclass
class Pair:
    """A, who tries, and B, whose things A names; B's extras made for the cases."""

    platform: Platform
    a: Member
    b: Member
    b_top_up_key: str
    b_cursor: str
    b_operation_ids: list[str] = field(default_factory=list)
    #: B's active card (B's default) and B's card waiting for the code texted to B.
    b_card_id: str = ""
    b_waiting_card_id: str = ""
    #: What an attempt made for B, for the case's `after`: B's own request, unspent.
    b_request: dict[str, Any] = field(default_factory=dict)

    def as_a(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**self.a.headers, **kwargs.pop("headers", {})}
        return self.platform.client.request(method, path, headers=headers, **kwargs)


@dataclass(frozen=True)
class Case:
    """One attempt by A with B's ids; `expected` are the acceptable statuses."""

    name: str
    attempt: Callable[[Pair], httpx.Response]
    expected: frozenset[int] = REFUSED
    check: Callable[[Pair, httpx.Response], None] | None = None
    after: Callable[[Pair], None] | None = None


def _key() -> dict[str, str]:
    return {"Idempotency-Key": uuid.uuid4().hex}


# -- the attempts ---------------------------------------------------------------------


def _unbind_bs_phone(pair: Pair) -> httpx.Response:
    return pair.as_a("DELETE", f"/v1/me/devices/{pair.b.device.device_id}")


def _bind_bs_phone(pair: Pair) -> httpx.Response:
    body = {"device_id": pair.b.device.device_id, "model": "Millet 14"}
    return pair.as_a("POST", "/v1/me/devices/bindings", json=body)


def _finish_bs_binding(pair: Pair) -> httpx.Response:
    """B starts binding a second phone; A sends that phone's answer as A's own."""
    second = SimulatedPhone(f"phone-{pair.b.sequence}-second", "Millet 15", pair.platform.clock)
    second.enroll_fingerprint(FINGER)
    options = pair.platform.bind_options(pair.b, second.device_id)
    assert second.touch(FINGER)
    credential = second.create_credential(json.dumps(options), ORIGIN)
    assert credential is not None
    body = {"credential": json.loads(credential)}
    pair.b_request = {"path": "/v1/me/devices", "json": body}
    return pair.as_a("POST", "/v1/me/devices", json=body)


def _b_still_can(pair: Pair) -> None:
    """A's attempt spent nothing of B's: B's own request with it still goes through."""
    request = pair.b_request
    pair.platform.ok(
        "POST", request["path"], pair.b, **{k: v for k, v in request.items() if k != "path"}
    )


def _top_up_from_bs_account(pair: Pair) -> httpx.Response:
    body = {"bank_account_id": pair.b.bank_account_id, "amount_fen": 100, "pin": PIN}
    return pair.as_a("POST", "/v1/me/top-ups", json=body, headers=_key())


def _withdraw_to_bs_account(pair: Pair) -> httpx.Response:
    body = {"bank_account_id": pair.b.bank_account_id, "amount_fen": 100, "pin": PIN}
    return pair.as_a("POST", "/v1/me/withdrawals", json=body, headers=_key())


def _top_up_with_bs_approval(pair: Pair) -> httpx.Response:
    """B's phone approves a top-up of B's own; A sends B's approval with A's account (B
    cannot even ask for a challenge naming A's account: that is 404)."""
    key = uuid.uuid4().hex
    payment = {"idempotency_key": key, "kind": "top_up", "amount_fen": 100}
    approval = pair.platform.assertion(
        pair.b, {**payment, "bank_account_id": pair.b.bank_account_id}
    )
    body = {"bank_account_id": pair.a.bank_account_id, "amount_fen": 100}
    body["quick_pay_assertion"] = approval
    return pair.as_a("POST", "/v1/me/top-ups", json=body, headers={"Idempotency-Key": key})


def _p2p_with_bs_approval(pair: Pair) -> httpx.Response:
    """B's phone approves paying A; A sends that approval to pay A from B's wallet."""
    key = uuid.uuid4().hex
    payment = {"idempotency_key": key, "kind": "p2p", "recipient_phone": pair.a.phone}
    approval = pair.platform.assertion(pair.b, {**payment, "amount_fen": 100})
    body = {"recipient_phone": pair.a.phone, "amount_fen": 100, "quick_pay_assertion": approval}
    headers = {"Idempotency-Key": key}
    pair.b_request = {"path": "/v1/me/p2p-transfers", "json": body, "headers": headers}
    return pair.as_a("POST", "/v1/me/p2p-transfers", json=body, headers=headers)


def _top_up_with_bs_idempotency_key(pair: Pair) -> httpx.Response:
    body = {"bank_account_id": pair.a.bank_account_id, "amount_fen": 100, "pin": PIN}
    return pair.as_a(
        "POST", "/v1/me/top-ups", json=body, headers={"Idempotency-Key": pair.b_top_up_key}
    )


def _is_as_own_new_operation(pair: Pair, answer: httpx.Response) -> None:
    """B's key in A's scope is a new key: A's own top-up, not B's answer replayed."""
    assert "Idempotent-Replayed" not in answer.headers
    assert answer.json()["operation_id"] not in pair.b_operation_ids


def _challenge_for_bs_phone(pair: Pair) -> httpx.Response:
    body = {
        "device_id": pair.b.device.device_id,
        "idempotency_key": uuid.uuid4().hex,
        "kind": "p2p",
        "recipient_phone": pair.b.phone,
        "amount_fen": 100,
    }
    return pair.as_a("POST", "/v1/me/quick-pay/challenges", json=body)


def _challenge_for_bs_account(pair: Pair) -> httpx.Response:
    body = {
        "device_id": pair.a.device.device_id,
        "idempotency_key": uuid.uuid4().hex,
        "kind": "top_up",
        "bank_account_id": pair.b.bank_account_id,
        "amount_fen": 100,
    }
    return pair.as_a("POST", "/v1/me/quick-pay/challenges", json=body)


def _history_after_bs_cursor(pair: Pair) -> httpx.Response:
    return pair.as_a("GET", "/v1/me/history", params={"cursor": pair.b_cursor})


def _shows_none_of_bs_operations(pair: Pair, answer: httpx.Response) -> None:
    if answer.status_code == 200:
        shown = {item["operation_id"] for item in answer.json()["items"]}
        assert shown.isdisjoint(pair.b_operation_ids)


def _buy_coins_from_bs_account(pair: Pair) -> httpx.Response:
    body = {
        "coins": 1,
        "source": "bank_account",
        "bank_account_id": pair.b.bank_account_id,
        "pin": PIN,
    }
    return pair.as_a("POST", "/v1/me/coins/purchases", json=body, headers=_key())


def _buy_coins_with_bs_approval(pair: Pair) -> httpx.Response:
    """B's phone approves a coin purchase from the balance; A sends that approval."""
    key = uuid.uuid4().hex
    payment = {"idempotency_key": key, "kind": "coin_purchase", "source": "balance", "coins": 1}
    approval = pair.platform.assertion(pair.b, payment)
    body = {"coins": 1, "source": "balance", "quick_pay_assertion": approval}
    headers = {"Idempotency-Key": key}
    pair.b_request = {"path": "/v1/me/coins/purchases", "json": body, "headers": headers}
    return pair.as_a("POST", "/v1/me/coins/purchases", json=body, headers=headers)


def _spend_coins_with_bs_approval(pair: Pair) -> httpx.Response:
    """B's phone approves spending coins at a merchant; A sends that approval."""
    merchant = pair.platform.ok("GET", "/v1/coin-merchants", None)[0]["id"]
    key = uuid.uuid4().hex
    payment = {"idempotency_key": key, "kind": "coin_spend", "merchant_id": merchant, "coins": 1}
    approval = pair.platform.assertion(pair.b, payment)
    body = {"merchant_id": merchant, "coins": 1, "quick_pay_assertion": approval}
    return pair.as_a("POST", "/v1/me/coins/spends", json=body, headers={"Idempotency-Key": key})


def _partner_headers(pair: Pair) -> dict[str, str]:
    keyring = pair.platform.client.app.state.keyring  # type: ignore[attr-defined]
    return {"Authorization": f"Bearer {partner_api_key(keyring, 'alipay.example')}"}


def _partner_challenge_for_bs_phone_under_as_number(pair: Pair) -> httpx.Response:
    """A partner names A's phone number and B's bound phone."""
    body = {
        "phone": pair.a.phone,
        "device_id": pair.b.device.device_id,
        "payment_id": "order-1",
        "payee": "shop",
        "amount_fen": 100,
    }
    return pair.platform.client.post(
        "/v1/partners/quick-pay/challenges", json=body, headers=_partner_headers(pair)
    )


def _partner_approval_by_bs_phone_for_a(pair: Pair) -> httpx.Response:
    """B's phone approves a partner payment of B's; the partner presents it as A's."""
    payment = {"payment_id": "order-2", "payee": "shop", "amount_fen": 100}
    options = pair.platform.client.post(
        "/v1/partners/quick-pay/challenges",
        json={**payment, "phone": pair.b.phone, "device_id": pair.b.device.device_id},
        headers=_partner_headers(pair),
    )
    assert options.status_code == 201, options.text
    assert pair.b.device.touch(FINGER)
    assertion = pair.b.device.get_assertion(json.dumps(options.json()), "https://alipay.example")
    assert assertion is not None
    body = {**payment, "phone": pair.a.phone, "assertion": json.loads(assertion)}
    return pair.platform.client.post(
        "/v1/partners/quick-pay/approvals", json=body, headers=_partner_headers(pair)
    )


def _report_bs_phone_lost(pair: Pair) -> httpx.Response:
    return pair.as_a("POST", f"/v1/me/devices/{pair.b.device.device_id}/loss")


def _report_bs_phone_found(pair: Pair) -> httpx.Response:
    return pair.as_a("DELETE", f"/v1/me/devices/{pair.b.device.device_id}/loss")


def _link_bs_bank_account(pair: Pair) -> httpx.Response:
    body = {"bank_code": BANK, "account_number": pair.b.account_number}
    return pair.as_a("POST", "/v1/me/bank-accounts", json=body)


def _sign_in_as_b_with_as_code(pair: Pair) -> httpx.Response:
    platform = pair.platform
    platform.ok("POST", "/v1/sessions/codes", None, json={"phone": pair.a.phone})
    code = platform.sms.messages_to("+86" + pair.a.phone)[-1].text.split("code is ")[1][:6]
    return pair.as_a("POST", "/v1/sessions", json={"phone": pair.b.phone, "code": code})


def _ask_a_code_for_bs_phone(pair: Pair) -> httpx.Response:
    return pair.as_a("POST", "/v1/sessions/codes", json={"phone": pair.b.phone})


def _same_answer_as_for_any_phone(_pair: Pair, answer: httpx.Response) -> None:
    assert answer.json() == {"status": "sent_if_registered"}  # the code went to B's phone


def _cards(pair: Pair) -> Banks:
    banks: Banks = pair.platform.client.app.state.banks  # type: ignore[attr-defined]
    return banks


def _envelope(pair: Pair, bank_code: str, phone_on_file: str) -> str:
    """A new card of `bank_code` with `phone_on_file`, sealed as a phone seals it."""
    bank = _cards(pair).bank(bank_code)
    account = bank.open_account(bank.open_customer("Card Holder", phone=phone_on_file), "debit")
    card = bank.issue_card(account.account.id, pin="314159")
    expiry = Expiry(2000 + int(card.expiry_yymm[:2]), int(card.expiry_yymm[2:]))
    key = pair.platform.client.app.state.tsp.public_key()  # type: ignore[attr-defined]
    return seal_card_for_tsp(key, card.pan, expiry, card.cvn2)


def _add_card_to_bs_phone(pair: Pair) -> httpx.Response:
    body = {
        "device_id": pair.b.device.device_id,
        "domain": "contactless",
        "envelope": _envelope(pair, "ICBC", "+86" + pair.a.phone),
    }
    return pair.as_a("POST", "/v1/me/cards", json=body)


def _add_bs_card_to_as_phone(pair: Pair) -> httpx.Response:
    """A holds B's card (its number, expiry and CVN2): the bank's phone on file is B's,
    so the card waits for the code the bank texts to B."""
    body = {
        "device_id": pair.a.device.device_id,
        "domain": "contactless",
        "envelope": _envelope(pair, "CCB", "+86" + pair.b.phone),
    }
    return pair.as_a("POST", "/v1/me/cards", json=body)


def _waits_for_the_code_texted_to_b(pair: Pair, answer: httpx.Response) -> None:
    assert answer.json()["state"] == "inactive"
    assert answer.json()["step_up"]["phone_masked"].endswith(pair.b.phone[-4:])
    assert "add your card" in pair.platform.sms.messages_to("+86" + pair.b.phone)[-1].text


def _confirm_bs_step_up(pair: Pair) -> httpx.Response:
    """B's step-up code (texted to B) sent by A for B's waiting card."""
    text = pair.platform.sms.messages_to(B_OTHER_PHONE)[-1].text
    code = next(word for word in text.split() if word.isdigit() and len(word) == 6)
    pair.b_request = {"path": f"/v1/me/cards/{pair.b_waiting_card_id}/step-up"}
    pair.b_request["json"] = {"code": code}
    return pair.as_a("POST", pair.b_request["path"], json={"code": code})


def _suspend_bs_card(pair: Pair) -> httpx.Response:
    return pair.as_a("POST", f"/v1/me/cards/{pair.b_card_id}/suspension")


def _resume_bs_card(pair: Pair) -> httpx.Response:
    return pair.as_a("DELETE", f"/v1/me/cards/{pair.b_card_id}/suspension")


def _delete_bs_card(pair: Pair) -> httpx.Response:
    return pair.as_a("DELETE", f"/v1/me/cards/{pair.b_card_id}")


def _keys_for_bs_card(pair: Pair, device_id: str) -> httpx.Response:
    point = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )
    body = {"device_id": device_id, "public_key": base64.urlsafe_b64encode(point).decode()}
    return pair.as_a("POST", f"/v1/me/cards/{pair.b_card_id}/keys", json=body)


def _keys_for_bs_card_on_bs_phone(pair: Pair) -> httpx.Response:
    return _keys_for_bs_card(pair, pair.b.device.device_id)


def _keys_for_bs_card_on_as_phone(pair: Pair) -> httpx.Response:
    return _keys_for_bs_card(pair, pair.a.device.device_id)


def _make_bs_card_as_default(pair: Pair) -> httpx.Response:
    return pair.as_a("PUT", "/v1/me/cards/default", json={"token_id": pair.b_card_id})


def _b_still_can_confirm(pair: Pair) -> None:
    """A's try spent none of B's attempts: B's own code still activates B's card."""
    request = pair.b_request
    answer = pair.platform.ok("POST", request["path"], pair.b, json=request["json"])
    assert answer["state"] == "active"


#: (method, path) -> the attempts with another user's ids on that route.
CASES: dict[tuple[str, str], list[Case]] = {
    ("POST", "/v1/sessions"): [
        # Signing in is the only way to a session: A's code does not open B's.
        Case("a_code_texted_to_a_does_not_sign_in_as_b", _sign_in_as_b_with_as_code, {401}),
    ],
    ("POST", "/v1/sessions/codes"): [
        # The answer is the same for any phone, and the code goes to B's phone only.
        Case(
            "a_code_for_bs_phone_goes_to_b",
            _ask_a_code_for_bs_phone,
            {202},
            _same_answer_as_for_any_phone,
        ),
    ],
    ("POST", "/v1/me/devices/bindings"): [Case("bind_bs_phone", _bind_bs_phone)],
    ("POST", "/v1/me/devices"): [
        Case("finish_bs_binding", _finish_bs_binding, after=_b_still_can),
    ],
    ("DELETE", "/v1/me/devices/{device_id}"): [Case("unbind_bs_phone", _unbind_bs_phone)],
    ("POST", "/v1/me/devices/{device_id}/loss"): [
        Case("report_bs_phone_lost", _report_bs_phone_lost)
    ],
    ("DELETE", "/v1/me/devices/{device_id}/loss"): [
        Case("report_bs_phone_found", _report_bs_phone_found)
    ],
    ("POST", "/v1/me/bank-accounts"): [
        # The bank links an account only in the holder's own name.
        Case("link_bs_bank_account", _link_bs_bank_account),
    ],
    ("POST", "/v1/me/top-ups"): [
        Case("top_up_from_bs_account", _top_up_from_bs_account),
        Case("top_up_with_bs_quick_pay_approval", _top_up_with_bs_approval),
        Case(
            "bs_idempotency_key_is_a_new_key_for_a",
            _top_up_with_bs_idempotency_key,
            frozenset({201}),
            _is_as_own_new_operation,
        ),
    ],
    ("POST", "/v1/me/withdrawals"): [Case("withdraw_to_bs_account", _withdraw_to_bs_account)],
    ("POST", "/v1/me/p2p-transfers"): [
        Case("p2p_with_bs_quick_pay_approval", _p2p_with_bs_approval, after=_b_still_can),
    ],
    ("POST", "/v1/me/quick-pay/challenges"): [
        Case("challenge_for_bs_phone", _challenge_for_bs_phone),
        Case("challenge_for_bs_bank_account", _challenge_for_bs_account),
    ],
    ("POST", "/v1/me/coins/purchases"): [
        Case("buy_coins_from_bs_account", _buy_coins_from_bs_account),
        Case(
            "buy_coins_with_bs_quick_pay_approval", _buy_coins_with_bs_approval, after=_b_still_can
        ),
    ],
    ("POST", "/v1/me/coins/spends"): [
        Case("spend_coins_with_bs_quick_pay_approval", _spend_coins_with_bs_approval),
    ],
    ("POST", "/v1/partners/quick-pay/challenges"): [
        Case(
            "partner_names_bs_phone_under_as_number",
            _partner_challenge_for_bs_phone_under_as_number,
        ),
    ],
    ("POST", "/v1/partners/quick-pay/approvals"): [
        Case("partner_presents_bs_approval_as_as", _partner_approval_by_bs_phone_for_a),
    ],
    ("POST", "/v1/me/cards"): [
        Case("add_a_card_to_bs_phone", _add_card_to_bs_phone),
        # Not a foreign id but a foreign card: the bank sends its code to B's phone.
        Case(
            "bs_card_waits_for_the_code_texted_to_b",
            _add_bs_card_to_as_phone,
            frozenset({202}),
            _waits_for_the_code_texted_to_b,
        ),
    ],
    ("POST", "/v1/me/cards/{token_id}/step-up"): [
        Case("confirm_bs_step_up_with_bs_code", _confirm_bs_step_up, after=_b_still_can_confirm),
    ],
    ("POST", "/v1/me/cards/{token_id}/keys"): [
        Case("keys_for_bs_card_on_bs_phone", _keys_for_bs_card_on_bs_phone),
        Case("keys_for_bs_card_on_as_phone", _keys_for_bs_card_on_as_phone),
    ],
    ("POST", "/v1/me/cards/{token_id}/suspension"): [Case("suspend_bs_card", _suspend_bs_card)],
    ("DELETE", "/v1/me/cards/{token_id}/suspension"): [Case("resume_bs_card", _resume_bs_card)],
    ("DELETE", "/v1/me/cards/{token_id}"): [Case("delete_bs_card", _delete_bs_card)],
    ("PUT", "/v1/me/cards/default"): [
        Case("make_bs_card_as_default", _make_bs_card_as_default),
    ],
    ("GET", "/v1/me/history"): [
        Case(
            "bs_cursor_shows_none_of_bs_operations",
            _history_after_bs_cursor,
            frozenset({200, 400, 403, 404}),
            _shows_none_of_bs_operations,
        ),
        Case("bs_cursor_is_refused", _history_after_bs_cursor),
    ],
}

#: Cases that fail today, for a fix outside this part of the code: case name -> why.
KNOWN_FAILURES: dict[str, str] = {}

#: (method, path) -> why the route takes no id of anything another user owns.
_MERCHANT_KEY = (
    "a merchant's key signs it, not a user's session: another merchant's ids answer 404 "
    "(test_checkout_api: test_another_merchants_intent_is_404, ..._key_works_and_a_revoked, "
    "test_webhook_endpoints_are_the_merchants_own)"
)
_CLIENT_SECRET = (
    "an intent belongs to its merchant, not to a user: its client secret is the proof to "
    "pay it, a wrong one 404 (test_checkout_api: test_a_wrong_client_secret_is_404)"
)
TAKES_NO_FOREIGN_ID: dict[tuple[str, str], str] = {
    ("POST", "/v1/merchants"): "onboards a new merchant from its application; no user data",
    ("GET", "/v1/merchant"): _MERCHANT_KEY,
    ("GET", "/v1/merchant/api-keys"): _MERCHANT_KEY,
    ("POST", "/v1/merchant/api-keys"): _MERCHANT_KEY,
    ("DELETE", "/v1/merchant/api-keys/{key_id}"): _MERCHANT_KEY,
    ("POST", "/v1/payment-intents"): _MERCHANT_KEY,
    ("GET", "/v1/payment-intents/{intent_id}"): _MERCHANT_KEY,
    ("POST", "/v1/payment-intents/{intent_id}/capture"): _MERCHANT_KEY,
    ("POST", "/v1/payment-intents/{intent_id}/cancel"): _MERCHANT_KEY,
    ("POST", "/v1/payment-intents/{intent_id}/refunds"): _MERCHANT_KEY,
    ("GET", "/v1/payment-intents/{intent_id}/refunds"): _MERCHANT_KEY,
    ("GET", "/v1/merchant/qr"): _MERCHANT_KEY,
    ("GET", "/v1/merchant/payouts"): _MERCHANT_KEY,
    ("POST", "/v1/payment-intents/{intent_id}/qr"): _MERCHANT_KEY,
    ("POST", "/v1/payment-intents/{intent_id}/collect"): (
        "a merchant's key signs it; the payer is whoever's one-time payment code the "
        "scanner read: a used, replaced, expired or mistyped code is 422 "
        "(test_checkout_api: test_a_payment_code_lapses_and_is_replaced)"
    ),
    ("POST", "/v1/me/qr/scans"): "reads a merchant's code; no user's ids in it",
    ("POST", "/v1/me/qr/payments"): "pays a merchant's static code from the session's wallet",
    ("POST", "/v1/me/payment-codes"): "a code for the session's user's wallet; takes no input",
    ("POST", "/v1/merchant/webhook-endpoints"): _MERCHANT_KEY,
    ("GET", "/v1/merchant/webhook-endpoints"): _MERCHANT_KEY,
    ("POST", "/v1/merchant/webhook-endpoints/{endpoint_id}/disable"): _MERCHANT_KEY,
    ("POST", "/v1/merchant/webhook-endpoints/{endpoint_id}/enable"): _MERCHANT_KEY,
    ("DELETE", "/v1/merchant/webhook-endpoints/{endpoint_id}"): _MERCHANT_KEY,
    ("GET", "/v1/merchant/events/{event_id}"): _MERCHANT_KEY,
    ("POST", "/v1/merchant/events/{event_id}/replay"): _MERCHANT_KEY,
    ("GET", "/v1/me/payment-intents/{intent_id}"): _CLIENT_SECRET,
    ("POST", "/v1/me/payment-intents/{intent_id}/confirm"): _CLIENT_SECRET,
    ("GET", "/v1/me/payment-intents/{intent_id}/card-data"): _CLIENT_SECRET,
    ("GET", "/v1/health"): "platform status; no user data",
    ("POST", "/v1/users"): "creates a new user from personal data; a taken phone is 409",
    ("GET", "/v1/me"): "the session's user only; no id in path, query or body",
    ("POST", "/v1/me/kyc/channels"): "a channel name, not an id; acts on the session's user",
    ("PUT", "/v1/me/pin"): "the session's user's PIN; the body is the PIN only",
    ("POST", "/v1/me/pin/checks"): "the session's user's PIN; the body is the PIN only",
    ("GET", "/v1/me/devices"): "lists the session's user's phones; takes no input",
    ("GET", "/v1/me/wallet"): "the session's user's balance; takes no input",
    ("POST", "/v1/me/wallet"): "opens the session's user's wallet; takes no input",
    ("GET", "/v1/me/bank-accounts"): "lists the session's user's accounts; takes no input",
    ("GET", "/v1/me/statements/{month}"): "a calendar month, not an id; the user's own wallet",
    ("GET", "/v1/me/coins"): "the session's user's coin balance; takes no input",
    ("GET", "/v1/coin-merchants"): "the public list of coin merchants; no user data",
    ("GET", "/v1/me/cards"): "lists the session's user's cards; takes no input",
    ("GET", "/v1/me/cards/tsp-key"): "the token service's public key; no user data",
}


# -- fixtures and helpers ---------------------------------------------------------------


def _platform(database_url: str) -> Iterator[Platform]:
    clock, keyring = ManualClock(), KeyRing.generate()
    app = create_app(
        database_url,
        clock=clock,
        keyring=keyring,
        sms=(sms := SimulatedSms()),
        pin_hashing=PIN_HASHING_FAST,
        bank_gateway=(bank := SimulatedBankGateway()),
        banks=Banks(database_url, keyring, GeneratedBankKeys(), clock),
        issuer_keys=IssuerKeyStore.generate(issuer_bins()),
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        yield Platform(client, clock, sms, bank)
        assert app.state.ledger.verify().ok


@pytest.fixture
def pair(database_url: str) -> Iterator[Pair]:
    for platform in _platform(database_url):
        a, b = platform.sign_up(1), platform.sign_up(2)
        key = uuid.uuid4().hex
        body = {"bank_account_id": b.bank_account_id, "amount_fen": 2_000, "pin": PIN}
        headers = {"Idempotency-Key": key}
        second = platform.ok("POST", "/v1/me/top-ups", b, json=body, headers=headers)
        page = platform.ok("GET", "/v1/me/history?limit=1", b)
        assert page["next_cursor"] is not None
        ids = [b.top_up_operation_id, second["operation_id"]]
        pair = Pair(platform, a, b, key, page["next_cursor"], ids)
        pair.b_card_id, pair.b_waiting_card_id = _bs_cards(pair)
        yield pair


def _bs_cards(pair: Pair) -> tuple[str, str]:
    """B adds a card with B's wallet phone on file (active, made B's default), and one
    with B's other phone on file, waiting for the code the bank texts there."""
    platform, b = pair.platform, pair.b
    body = {"device_id": b.device.device_id, "domain": "contactless"}
    active = platform.ok(
        "POST",
        "/v1/me/cards",
        b,
        json={**body, "envelope": _envelope(pair, "ICBC", "+86" + b.phone)},
    )
    platform.ok("PUT", "/v1/me/cards/default", b, json={"token_id": active["id"]})
    waiting = platform.client.post(
        "/v1/me/cards",
        json={**body, "envelope": _envelope(pair, "CCB", B_OTHER_PHONE)},
        headers=b.headers,
    )
    assert waiting.status_code == 202, waiting.text
    return active["id"], waiting.json()["id"]


def _view(platform: Platform, member: Member) -> dict[str, Any]:
    """Everything the member can see of their own, and their money at the bank."""
    paths = (
        "/v1/me",
        "/v1/me/wallet",
        "/v1/me/devices",
        "/v1/me/bank-accounts",
        "/v1/me/coins",
        "/v1/me/cards",
    )
    view = {path: platform.ok("GET", path, member) for path in paths}
    view["history"] = platform.ok("GET", "/v1/me/history?limit=100", member)
    view["bank"] = platform.bank.balance_fen(BANK, member.account_number)
    return view


def _v1_routes(app: Any) -> set[tuple[str, str]]:
    """(method, path) of every route under /v1, included routers' routes too (FastAPI
    0.16x nests them: `iter_route_contexts` flattens; older versions list them flat)."""
    routes = getattr(fastapi.routing, "iter_route_contexts", iter)(app.routes)
    return {
        (method, route.path)
        for route in routes
        if (route.path or "").startswith("/v1/")
        for method in route.methods or ()
        if method != "HEAD"
    }


def _params() -> list[Any]:
    params = []
    for (method, path), cases in CASES.items():
        for case in cases:
            marks = []
            if case.name in KNOWN_FAILURES:
                marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_FAILURES[case.name]))
            params.append(pytest.param(case, id=f"{method} {path}: {case.name}", marks=marks))
    return params


# -- the tests ------------------------------------------------------------------------


@pytest.mark.parametrize("case", _params())
def test_another_users_ids_are_refused_and_change_nothing(pair: Pair, case: Case) -> None:
    platform = pair.platform
    b_before = _view(platform, pair.b)
    a_balance_before = _view(platform, pair.a)["/v1/me/wallet"]

    answer = case.attempt(pair)

    assert answer.status_code in case.expected, answer.text
    if case.check is not None:
        case.check(pair, answer)
    assert _view(platform, pair.b) == b_before
    if min(case.expected) >= 400:  # refused: A gained nothing either
        assert _view(platform, pair.a)["/v1/me/wallet"] == a_balance_before
    if case.after is not None:
        case.after(pair)


def test_a_users_own_views_name_nothing_of_another_users(pair: Pair) -> None:
    a_view = repr(_view(pair.platform, pair.a))
    b = pair.b
    for foreign in (
        b.user_id,
        b.phone,
        b.device.device_id,
        b.bank_account_id,
        pair.b_card_id,
        pair.b_waiting_card_id,
        *pair.b_operation_ids,
    ):
        assert foreign not in a_view


def test_every_v1_route_is_covered(tmp_path: Path) -> None:
    for platform in _platform(f"sqlite:///{tmp_path / 'routes.db'}"):
        routes = _v1_routes(platform.client.app)
    covered, exempt = set(CASES), set(TAKES_NO_FOREIGN_ID)
    assert covered.isdisjoint(exempt)
    assert not routes - covered - exempt, (
        "routes neither tried with another user's ids (CASES) nor listed with a reason in "
        f"TAKES_NO_FOREIGN_ID: {sorted(routes - covered - exempt)}"
    )
    assert not (covered | exempt) - routes, f"no such routes: {sorted((covered | exempt) - routes)}"
