"""In-app card payments end to end, on both engines: a payment intent confirmed with the
payer's tokenized bank card (the phone's applet makes the cryptogram over the intent's
card data), sent by the platform as acquirer through the card network switch to the
issuer host (`sim.tap.TapNetwork` on 127.0.0.1), and refunded back to the card; the
platform's ledger and the bank's books checked after each."""

from __future__ import annotations

import asyncio
import datetime
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from milletpay.banks import Bank
from milletpay.banks.keys import issuer_bins
from milletpay.cards.tokens import TokenDomain
from milletpay.checkout.card_funding import STUCK_AFTER_S, CardFunding
from milletpay.checkout.card_link import CardNetworkLink
from milletpay.checkout.intents import CAPTURE_WINDOW_S
from milletpay.core.clock import ManualClock
from milletpay.core.keyring import KeyRing
from milletpay.emv.applet import InAppTransaction
from milletpay.emv.keys import IssuerKeyStore
from milletpay.network.iso8583 import Message
from milletpay.network.switch import CardNetwork
from milletpay.risk import OperationKind
from milletpay.risk.limits import LIMITS
from milletpay.sim.tap import TapNetwork, TapPhone, TapPlatform
from milletpay.wallet.accounts import AccountCode, platform_account_id

from .test_checkout_api import Merchant, new_intent, onboard
from .wallet_world import PIN, Person, World, bound_phone, make_world, phone_approval

DEPOSIT_FEN = 100_000
#: The checkout's wait for the switch in these tests (the issuer is slowed past it).
RESPONSE_TIMEOUT_S = 1.0


class RunningNetwork:
    """The tap network (issuer hosts, switch) on an event loop in a thread of its own, so
    that the API's blocking calls can reach it."""

    def __init__(self, platform: TapPlatform) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.network = TapNetwork(platform, ("ICBC",))
        self.call(self.network.__aenter__())

    def call(self, coroutine: Any) -> Any:
        """Run `coroutine` on the network's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def close(self) -> None:
        self.call(self.network.__aexit__(None, None, None))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


@dataclass
class CardWorld:
    world: World
    platform: TapPlatform
    running: RunningNetwork

    @property
    def bank(self) -> Bank:
        return self.platform.banks.bank("ICBC")


@pytest.fixture
def card_world(database_url: str) -> Iterator[CardWorld]:
    clock, keyring = ManualClock(), KeyRing.generate()
    issuer_keys = IssuerKeyStore.generate(issuer_bins())
    platform = TapPlatform.open(database_url, clock=clock, keyring=keyring, issuer_keys=issuer_keys)
    running = RunningNetwork(platform)
    link = CardNetworkLink(
        "127.0.0.1", running.network.switch_port, response_timeout_s=RESPONSE_TIMEOUT_S
    )
    worlds = make_world(
        database_url,
        clock=clock,
        keyring=keyring,
        banks=platform.banks,
        issuer_keys=issuer_keys,
        card_network=link,
    )
    world = next(worlds)
    try:
        yield CardWorld(world, platform, running)
        assert platform.banks.bank("ICBC").verify().ok
    finally:
        running.close()
        next(worlds, None)  # the app shuts down: the ledger is verified, the link closed
        platform.close()


def payer_with_card(cw: CardWorld) -> tuple[Person, TapPhone]:
    payer = cw.world.person()
    phone = cw.platform.phone_of(payer.phone, bank_code="ICBC", deposit_fen=DEPOSIT_FEN)
    return payer, phone


def card_body(cw: CardWorld, payer: Person, phone: TapPhone, intent: dict[str, Any]) -> Any:
    """What the wallet sends: the intent's card data signed by the phone's applet."""
    answer = cw.world.client.get(
        f"/v1/me/payment-intents/{intent['id']}/card-data",
        params={"client_secret": intent["client_secret"]},
        headers=payer.headers,
    )
    assert answer.status_code == 200, answer.text
    data = answer.json()
    transaction = InAppTransaction(
        data["amount_fen"],
        data["currency_numeric"],
        datetime.date.fromisoformat(data["date"]),
        bytes.fromhex(data["unpredictable_number"]),
        data["transaction_type"],
    )
    icc = phone.applet.in_app_cryptogram(phone.token.number, transaction)
    return {"token_id": f"{phone.token.id:032x}", "icc_data": icc.hex()}


def pay(
    cw: CardWorld,
    payer: Person,
    intent: dict[str, Any],
    card: dict[str, Any],
    key: str | None = None,
) -> httpx.Response:
    body = {"client_secret": intent["client_secret"], "pin": PIN, "funding": "card", "card": card}
    path = f"/v1/me/payment-intents/{intent['id']}/confirm"
    return cw.world.post(path, payer, body, key or uuid.uuid4().hex)  # type: ignore[no-any-return]


def bank_balance(bank: Bank) -> tuple[int, int]:
    """(posted, held) of the one cardholder account the test opened at `bank`."""
    with bank.engine.connect() as conn:
        (account,) = conn.execute(sa.text("SELECT id FROM bank_accounts")).scalars()
    found = bank.balance(int.from_bytes(account, "big"))
    return found.posted_fen, found.held_fen


def receivable_fen(world: World) -> int:
    """What the card network owes the platform, in its ledger (0 before its first card
    payment opened the account)."""
    found = world.ledger.lookup_accounts([platform_account_id(AccountCode.CARD_NETWORK)])
    return sum(a.debits_posted - a.credits_posted for a in found)


def merchant_balance(world: World, merchant: Merchant) -> int:
    me = world.client.get("/v1/merchant", headers=merchant.secret)
    return int(me.json()["balance"]["posted_fen"])


def event_types(cw: CardWorld) -> list[str]:
    """The merchants' events, oldest first (the webhook outbox)."""
    with cw.platform.engine.connect() as conn:
        return list(conn.execute(sa.text("SELECT type FROM webhook_events ORDER BY id")).scalars())


# -- paying ---------------------------------------------------------------------------------


def test_a_card_payment_is_approved_by_the_bank_and_owed_by_the_network(
    card_world: CardWorld,
) -> None:
    cw, world = card_world, card_world.world
    payer, phone = payer_with_card(cw)
    merchant = onboard(world)
    intent = new_intent(world, merchant, amount_fen=12_300)

    paid = pay(cw, payer, intent, card_body(cw, payer, phone, intent))

    assert paid.status_code == 200, paid.text
    assert paid.json()["status"] == "succeeded" and paid.json()["funding"] == "card"
    shown = world.client.get(f"/v1/payment-intents/{intent['id']}", headers=merchant.secret).json()
    assert (shown["funding"], shown["amount_received_fen"]) == ("card", 12_300)
    assert shown["fee_fen"] == 74  # 0.60 % at MCC 5942, half a fen up
    assert bank_balance(cw.bank) == (DEPOSIT_FEN - 12_300, 0)  # the 0200 posted at once
    assert receivable_fen(world) == 12_300
    assert merchant_balance(world, merchant) == 12_300 - 74
    assert world.balance(payer) == 0  # the wallet balance was not touched
    (record,) = cw.platform.books.clearing_records()
    assert (record.amount_fen, record.token_number) == (12_300, phone.token.number)


def test_insufficient_funds_is_a_decline_naming_the_reason(card_world: CardWorld) -> None:
    cw, world = card_world, card_world.world
    payer, phone = payer_with_card(cw)
    merchant = onboard(world)
    intent = new_intent(world, merchant, amount_fen=DEPOSIT_FEN + 1)

    declined = pay(cw, payer, intent, card_body(cw, payer, phone, intent))

    assert declined.status_code == 402, declined.text
    error = declined.json()["error"]
    assert (error["code"], error["intent_status"]) == (
        "insufficient_funds",
        "requires_confirmation",
    )
    shown = world.client.get(f"/v1/payment-intents/{intent['id']}", headers=merchant.secret).json()
    assert (shown["last_error_code"], shown["confirm_attempts"]) == ("insufficient_funds", 1)
    assert bank_balance(cw.bank) == (DEPOSIT_FEN, 0)
    assert receivable_fen(world) == 0
    assert "payment_intent.payment_failed" in event_types(cw)


def test_the_card_limit_refuses_before_anything_is_sent(card_world: CardWorld) -> None:
    cw, world = card_world, card_world.world
    payer, phone = payer_with_card(cw)  # one KYC channel: Class I
    limit = LIMITS[(OperationKind.CARD_PAYMENT, 1)].per_transaction_fen
    intent = new_intent(world, onboard(world), amount_fen=limit + 1)

    refused = pay(cw, payer, intent, card_body(cw, payer, phone, intent))

    assert refused.status_code == 402
    assert refused.json()["error"]["code"] == "per_transaction_limit_exceeded"
    assert refused.json()["error"]["limit_fen"] == limit
    assert cw.running.network.issuer_exchanges == []  # nothing reached the bank


def test_a_token_outside_its_domain_is_refused_by_the_network(card_world: CardWorld) -> None:
    cw, world = card_world, card_world.world
    payer, phone = payer_with_card(cw)
    merchant = onboard(world)
    intent = new_intent(world, merchant)
    body = card_body(cw, payer, phone, intent)
    with cw.platform.engine.begin() as conn:  # a web token: never in an app
        conn.execute(
            sa.text("UPDATE tokens SET domain = :d WHERE token_number = :n"),
            {"d": TokenDomain.ECOMMERCE.value, "n": phone.token.number},
        )

    refused = pay(cw, payer, intent, body)

    assert refused.status_code == 402, refused.text
    assert refused.json()["error"]["code"] == "card_not_permitted"  # 57
    assert cw.running.network.issuer_exchanges == []
    assert bank_balance(cw.bank) == (DEPOSIT_FEN, 0)


def test_an_in_app_payment_from_another_device_is_refused(card_world: CardWorld) -> None:
    cw, world = card_world, card_world.world
    payer, phone = payer_with_card(cw)
    intent = new_intent(world, onboard(world))
    assert pay(cw, payer, intent, card_body(cw, payer, phone, intent)).status_code == 200
    sent = cw.running.network.issuer_exchanges[-1][0]
    stolen = _to_switch(sent, phone, stan="777777", device="another-phone")

    answer = cw.running.call(_switch(cw).handle(stolen))

    assert answer.text(39) == "57"


def test_a_cryptogram_sent_again_is_refused(card_world: CardWorld) -> None:
    cw, world = card_world, card_world.world
    payer, phone = payer_with_card(cw)
    merchant = onboard(world)
    first = new_intent(world, merchant, amount_fen=DEPOSIT_FEN + 1)
    body = card_body(cw, payer, phone, first)
    assert pay(cw, payer, first, body).status_code == 402  # declined 51: a new attempt

    again = pay(cw, payer, first, body)  # the same field 55 for the next attempt
    assert again.status_code == 422
    assert again.json()["error"]["code"] == "card_cryptogram_invalid"
    # Sent to the network anyway, as a new message (a new STAN, the same ATC and ARQC).
    sent = cw.running.network.issuer_exchanges[-1][0]
    replay = _to_switch(sent, phone, stan="888888", icc=bytes.fromhex(body["icc_data"]))
    assert cw.running.call(_switch(cw).handle(replay)).text(39) == "05"
    assert bank_balance(cw.bank) == (DEPOSIT_FEN, 0)


def _switch(cw: CardWorld) -> CardNetwork:
    switch = cw.running.network.switch
    assert switch is not None
    return switch


def _to_switch(
    forwarded: Message,
    phone: TapPhone,
    *,
    stan: str,
    device: str | None = None,
    icc: bytes | None = None,
) -> Message:
    """A request as an acquirer would send it again, from what the issuer received: the
    token back in field 2, a new STAN, and the given device or field 55."""
    fields = {n: v for n, v in forwarded.fields.items() if n not in (14, 33, 63)}
    fields |= {2: phone.token.number, 11: stan, 14: forwarded.text(14)}
    if device is not None:
        fields[61] = device
    if icc is not None:
        fields[55] = icc
    return Message(forwarded.mti, fields)


def test_an_issuer_answering_too_late_leaves_no_hold_and_no_payment(
    card_world: CardWorld,
) -> None:
    cw, world = card_world, card_world.world
    payer, phone = payer_with_card(cw)
    merchant = onboard(world)
    intent = new_intent(world, merchant, amount_fen=4_200)
    body = card_body(cw, payer, phone, intent)
    delays = cw.running.network.issuer_delay_s
    delays["ICBC"] = 2.0
    threading.Timer(RESPONSE_TIMEOUT_S + 0.3, delays.clear).start()  # the bank recovers

    late = pay(cw, payer, intent, body)

    assert late.status_code == 402, late.text
    assert late.json()["error"]["code"] == "card_network_timeout"
    assert late.json()["error"]["intent_status"] == "requires_confirmation"
    with cw.platform.engine.connect() as conn:
        statuses = conn.execute(sa.text("SELECT kind, status FROM card_payments")).all()
    assert [tuple(s) for s in statuses] == [("payment", "reversed")]
    _eventually(lambda: bank_balance(cw.bank) == (DEPOSIT_FEN, 0))
    assert receivable_fen(world) == 0 and merchant_balance(world, merchant) == 0


def test_a_retry_never_charges_twice(card_world: CardWorld) -> None:
    cw, world = card_world, card_world.world
    payer, phone = payer_with_card(cw)
    merchant = onboard(world)
    intent = new_intent(world, merchant, amount_fen=2_500)
    body, key = card_body(cw, payer, phone, intent), uuid.uuid4().hex

    first = pay(cw, payer, intent, body, key)
    retried = pay(cw, payer, intent, body, key)
    other_key = pay(cw, payer, intent, card_body(cw, payer, phone, intent))

    assert first.status_code == retried.status_code == 200
    assert retried.headers.get("Idempotent-Replayed") == "true"
    assert other_key.status_code == 409  # it succeeded: nothing to confirm
    assert bank_balance(cw.bank) == (DEPOSIT_FEN - 2_500, 0)
    assert receivable_fen(world) == 2_500


# -- refunds --------------------------------------------------------------------------------


def refund(
    world: World, merchant: Merchant, intent: dict[str, Any], key: str, **body: Any
) -> httpx.Response:
    return world.client.post(
        f"/v1/payment-intents/{intent['id']}/refunds",
        json=body,
        headers={**merchant.secret, "Idempotency-Key": key},
    )


def test_refunds_go_back_to_the_card_up_to_the_payment(card_world: CardWorld) -> None:
    cw, world = card_world, card_world.world
    payer, phone = payer_with_card(cw)
    merchant = onboard(world)
    intent = new_intent(world, merchant, amount_fen=10_000)
    assert pay(cw, payer, intent, card_body(cw, payer, phone, intent)).status_code == 200
    fee = 60

    first = refund(world, merchant, intent, "r1", amount_fen=3_000, reason="one book back")
    again = refund(world, merchant, intent, "r1", amount_fen=3_000, reason="one book back")
    rest = refund(world, merchant, intent, "r2")
    too_much = refund(world, merchant, intent, "r3", amount_fen=1)

    assert first.status_code == 201, first.text
    assert again.json()["id"] == first.json()["id"]  # the same key: the same refund
    assert rest.status_code == 201 and rest.json()["amount_fen"] == 7_000
    assert too_much.status_code == 422
    assert bank_balance(cw.bank) == (DEPOSIT_FEN, 0)  # every fen back on the card
    assert receivable_fen(world) == 0
    assert merchant_balance(world, merchant) == 0  # the payment and its fee undone
    assert world.balance(payer) == 0  # nothing went to the wallet
    listed = world.client.get(
        f"/v1/payment-intents/{intent['id']}/refunds", headers=merchant.secret
    ).json()["items"]
    assert [r["amount_fen"] for r in listed] == [3_000, 7_000]
    assert event_types(cw).count("refund.succeeded") == 2
    records = cw.platform.books.clearing_records()  # the network's books, for settlement
    assert [(r.processing_code, r.amount_fen) for r in records] == [
        ("000000", 10_000),
        ("200000", 3_000),
        ("200000", 7_000),
    ]
    assert fee == 60


def test_without_a_card_network_card_funding_is_409(database_url: str) -> None:
    worlds = make_world(database_url)
    world = next(worlds)
    try:
        payer = world.person()
        intent = new_intent(world, onboard(world))
        card = {"token_id": "0" * 32, "icc_data": "9F2608" + "00" * 8}
        body = {"client_secret": intent["client_secret"], "pin": PIN, "funding": "card"}
        path = f"/v1/me/payment-intents/{intent['id']}/confirm"
        answer = world.post(path, payer, {**body, "card": card}, uuid.uuid4().hex)
        assert answer.status_code == 409
        assert answer.json()["error"]["code"] == "card_funding_unavailable"
    finally:
        next(worlds, None)


def _eventually(check: Any, timeout_s: float = 6.0) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.1)


def test_a_payment_left_in_flight_by_a_dead_server_is_reversed_and_not_paid(
    card_world: CardWorld,
) -> None:
    cw, world = card_world, card_world.world
    payer, phone = payer_with_card(cw)
    merchant = onboard(world)
    intent = new_intent(world, merchant, amount_fen=3_300)
    body = card_body(cw, payer, phone, intent)
    funding: CardFunding = world.client.app.state.card_funding
    number = int(intent["id"][3:], 16)
    user_id = world.client.app.state.identity.user_id_by_phone(payer.phone)
    # The server admits the payment and sends it, then dies before it hears the answer.
    sent = world.client.app.state.committer.run(
        lambda tx: funding._admit(
            tx, user_id, number, phone.token.id, bytes.fromhex(body["icc_data"])
        )
    )
    funding._link.exchange(sent.message)
    assert bank_balance(cw.bank) == (DEPOSIT_FEN - 3_300, 0)
    assert funding.resume_stuck() == 0  # not yet: it may still be waiting for its answer
    world.clock.advance(seconds=STUCK_AFTER_S)
    with cw.platform.engine.connect() as conn:
        (row,) = conn.execute(sa.text("SELECT * FROM card_payments")).all()
    # Two servers' passes find the same row: the first claim takes it, the second does not.
    world.clock.advance(nanoseconds=1)
    assert funding._claim(row) and not funding._claim(row)
    world.clock.advance(seconds=STUCK_AFTER_S)

    assert funding.resume_stuck() == 1

    assert funding.resume_stuck() == 0  # finished: never reversed twice
    assert bank_balance(cw.bank) == (DEPOSIT_FEN, 0)  # the 0400 gave it back
    shown = world.client.get(f"/v1/payment-intents/{intent['id']}", headers=merchant.secret).json()
    assert (shown["status"], shown["last_error_code"]) == (
        "requires_confirmation",
        "card_network_timeout",
    )
    assert receivable_fen(world) == 0 and merchant_balance(world, merchant) == 0


# -- manual capture -----------------------------------------------------------------------


def intent_of(world: World, merchant: Merchant, intent: dict[str, Any]) -> dict[str, Any]:
    answer = world.client.get(f"/v1/payment-intents/{intent['id']}", headers=merchant.secret)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def held_by_card(cw: CardWorld, amount_fen: int) -> tuple[Merchant, dict[str, Any]]:
    payer, phone = payer_with_card(cw)
    merchant = onboard(cw.world)
    intent = new_intent(cw.world, merchant, amount_fen=amount_fen, capture_method="manual")
    held = pay(cw, payer, intent, card_body(cw, payer, phone, intent))
    assert held.status_code == 200, held.text
    assert held.json()["status"] == "requires_capture"
    return merchant, intent


def test_a_manual_capture_holds_then_completes_part_of_it(card_world: CardWorld) -> None:
    cw, world = card_world, card_world.world
    merchant, intent = held_by_card(cw, 8_000)
    assert bank_balance(cw.bank) == (DEPOSIT_FEN, 8_000)  # the 0100: a hold
    assert receivable_fen(world) == 0  # nothing is owed before the capture

    path = f"/v1/payment-intents/{intent['id']}/capture"
    captured = world.client.post(path, json={"amount_fen": 6_500}, headers=merchant.secret)

    assert captured.status_code == 200, captured.text
    assert (captured.json()["status"], captured.json()["amount_received_fen"]) == (
        "succeeded",
        6_500,
    )
    assert bank_balance(cw.bank) == (DEPOSIT_FEN - 6_500, 0)  # the 0220: posted, rest freed
    assert receivable_fen(world) == 6_500
    assert merchant_balance(world, merchant) == 6_500 - 39
    (record,) = cw.platform.books.clearing_records()
    assert (str(record.status), record.completed_fen) == ("completed", 6_500)
    again = world.client.post(path, json={}, headers=merchant.secret)
    assert again.status_code == 409


def test_canceling_a_card_hold_reverses_it(card_world: CardWorld) -> None:
    cw, world = card_world, card_world.world
    merchant, intent = held_by_card(cw, 8_000)

    canceled = world.client.post(
        f"/v1/payment-intents/{intent['id']}/cancel", headers=merchant.secret
    )

    assert canceled.status_code == 200, canceled.text
    assert canceled.json()["status"] == "canceled"
    assert bank_balance(cw.bank) == (DEPOSIT_FEN, 0)
    assert receivable_fen(world) == 0


def test_a_card_hold_past_its_capture_window_is_released(card_world: CardWorld) -> None:
    cw, world = card_world, card_world.world
    merchant, intent = held_by_card(cw, 8_000)
    funding: CardFunding = world.client.app.state.card_funding
    world.clock.advance(seconds=CAPTURE_WINDOW_S)

    assert funding.resume_stuck() == 1
    world.client.app.state.intents.sweep()  # the wallet's sweep leaves card holds alone

    shown = intent_of(world, merchant, intent)
    assert (shown["status"], shown["cancellation_reason"]) == ("canceled", "capture_window_lapsed")
    assert bank_balance(cw.bank) == (DEPOSIT_FEN, 0)


def test_quick_pay_approves_a_card_payment_as_it_does_the_balance(card_world: CardWorld) -> None:
    cw, world = card_world, card_world.world
    payer, phone = payer_with_card(cw)
    device = bound_phone(world, payer, "phone-q")
    intent = new_intent(world, onboard(world), amount_fen=1_800)
    card = card_body(cw, payer, phone, intent)
    payment = {
        "idempotency_key": "qp-card-1",
        "kind": "payment_intent",
        "payment_intent_id": intent["id"],
        "amount_fen": 1_800,
    }
    assertion = phone_approval(world, payer, device, payment)
    body = {
        "client_secret": intent["client_secret"],
        "quick_pay_assertion": assertion,
        "funding": "card",
        "card": card,
    }
    path = f"/v1/me/payment-intents/{intent['id']}/confirm"

    paid = world.post(path, payer, body, "qp-card-1")

    assert paid.status_code == 200, paid.text
    assert bank_balance(cw.bank) == (DEPOSIT_FEN - 1_800, 0)
    no_approval = {k: v for k, v in body.items() if k != "quick_pay_assertion"}
    refused = world.post(path, payer, no_approval, "qp-card-2")
    assert (refused.status_code, refused.json()["error"]["code"]) == (400, "approval_required")


def test_a_switch_that_cannot_be_reached_is_a_decline_and_sends_nothing(
    card_world: CardWorld,
) -> None:
    cw, world = card_world, card_world.world
    payer, phone = payer_with_card(cw)
    merchant = onboard(world)
    intent = new_intent(world, merchant, amount_fen=1_500)
    funding: CardFunding = world.client.app.state.card_funding
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    working, funding._link = funding._link, CardNetworkLink("127.0.0.1", dead_port)
    try:
        refused = pay(cw, payer, intent, card_body(cw, payer, phone, intent))
    finally:
        funding._link.close()
        funding._link = working

    assert refused.status_code == 402, refused.text
    assert refused.json()["error"]["code"] == "card_network_unavailable"
    assert intent_of(world, merchant, intent)["status"] == "requires_confirmation"
    assert bank_balance(cw.bank) == (DEPOSIT_FEN, 0)
    retried = pay(cw, payer, intent, card_body(cw, payer, phone, intent))
    assert retried.status_code == 200, retried.text  # the switch is back: a new attempt
