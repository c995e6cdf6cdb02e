"""The mall scene of `millet demo`: merchants and shoppers through the HTTP API, webhooks
verified by the merchants' own receiver, and the day's payouts equal to what each
merchant was owed. Played alone on a SQLite file (`test_demo.py` plays it within the
whole demo on both engines)."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from rich.console import Console

from milletpay.checkout.fees import fee_fen
from milletpay.checkout.webhooks import (
    SignatureInvalid,
    SignatureTimestampOutsideTolerance,
    signature_header,
)
from milletpay.core.clock import NS_PER_S, ManualClock
from milletpay.core.keyring import KeyRing
from milletpay.ledger import Ledger
from milletpay.sim.demo_mall import (
    BAND_FEN,
    BOOK_REFUND_FEN,
    BOOKS_FEN,
    BOOKSHOP,
    BREAKFAST_FEN,
    CAFE,
    GAME_STUDIO,
    LATTE_FEN,
    MILLET_STORE,
    PRE_ORDER_CAPTURED_FEN,
    SEASON_PASS_FEN,
    SHOPS,
    MallScene,
    play_mall_scene,
)
from milletpay.sim.webhook_receiver import WebhookReceiver

#: The bookshop's refund gives back its share of the fee: 0.77 × 48/128, to the fen.
BOOK_FEE_RETURNED_FEN = 29


@dataclass(frozen=True)
class MallDay:
    scene: MallScene
    output: str
    ledger_ok: bool


def play(url: str, keyring: KeyRing) -> MallDay:
    console = Console(file=io.StringIO(), width=120)
    scene = play_mall_scene(url, ManualClock(time.time_ns()), console, keyring)
    with Ledger.open(url) as ledger:
        ledger_ok = ledger.verify().ok
    output = console.file.getvalue()
    assert isinstance(output, str)
    return MallDay(scene, output, ledger_ok)


@pytest.fixture(scope="module")
def mall_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('mall') / 'millet.db'}"


@pytest.fixture(scope="module")
def keyring() -> KeyRing:
    return KeyRing.generate()


@pytest.fixture(scope="module")
def mall(mall_url: str, keyring: KeyRing) -> Iterator[MallDay]:
    yield play(mall_url, keyring)


def test_every_line_of_the_mall_is_as_expected_and_the_ledger_verifies(mall: MallDay) -> None:
    assert all(line.as_expected for line in mall.scene.lines), mall.output
    assert "✗" not in mall.output
    assert mall.ledger_ok
    for answers in (
        "requires_capture, succeeded",  # the pre-order, captured in part
        "merchant, succeeded",  # the static code
        "payment_intent, succeeded",  # the dynamic code
        "payment_code_used, canceled",  # the payment code, collected twice
        "202, duplicate",  # the replayed event
        f"400, {SignatureInvalid.code}",  # the forged delivery
    ):
        assert answers in mall.output
    assert "through the HTTP API (cast 1)" in mall.output


def test_the_receiver_got_verified_events_of_every_kind(mall: MallDay) -> None:
    receiver = mall.scene.receiver
    types = {event.type for event in receiver.events}
    assert types >= {
        "payment_intent.created",
        "payment_intent.requires_capture",
        "payment_intent.succeeded",
        "payment_intent.canceled",
        "refund.succeeded",
        "payout.paid",
    }
    assert {event.merchant for event in receiver.events} == {shop.slug for shop in SHOPS}
    assert [d.type for d in receiver.duplicates] == ["refund.succeeded"], "the replay, once"
    assert [r.reason for r in receiver.refused] == [SignatureInvalid.code], "only the forgery"
    payouts_told = [e.merchant for e in receiver.events if e.type == "payout.paid"]
    assert sorted(payouts_told) == sorted(shop.slug for shop in SHOPS)


def test_each_payout_is_what_the_merchant_was_owed(mall: MallDay) -> None:
    paid_out = mall.scene.paid_out
    assert set(paid_out) == set(SHOPS)
    for shop, (owed_fen, paid_fen) in paid_out.items():
        assert paid_fen == owed_fen > 0, shop.display_name

    def takings(shop_mcc: str, *amounts_fen: int) -> int:
        return sum(amount - fee_fen(amount, shop_mcc) for amount in amounts_fen)

    assert paid_out[MILLET_STORE][1] == takings(MILLET_STORE.mcc, BAND_FEN, PRE_ORDER_CAPTURED_FEN)
    assert paid_out[CAFE][1] == takings(CAFE.mcc, LATTE_FEN, BREAKFAST_FEN)
    assert paid_out[BOOKSHOP][1] == (
        takings(BOOKSHOP.mcc, BOOKS_FEN) - BOOK_REFUND_FEN + BOOK_FEE_RETURNED_FEN
    )


def test_coins_pay_the_game_studio_or_the_line_says_not_yet(mall: MallDay) -> None:
    (line,) = [line for line in mall.scene.lines if "funded by coins" in line.text]
    assert line.as_expected
    assert line.codes in (("coins_unsupported",), ("succeeded",))
    season_pass = SEASON_PASS_FEN - fee_fen(SEASON_PASS_FEN, GAME_STUDIO.mcc)
    if line.codes == ("coins_unsupported",):
        assert "not yet supported" in line.text
        # Nothing was taken from the wallet for it: the studio was paid the season pass only.
        assert mall.scene.paid_out[GAME_STUDIO][1] == season_pass
    else:
        assert mall.scene.paid_out[GAME_STUDIO][1] > season_pass


def test_a_second_mall_on_the_same_database_has_a_new_cast(
    mall: MallDay, mall_url: str, keyring: KeyRing
) -> None:
    again = play(mall_url, keyring)
    assert all(line.as_expected for line in again.scene.lines), again.output
    assert again.ledger_ok
    assert again.scene.cast_number == mall.scene.cast_number + 1
    assert again.scene.paid_out == mall.scene.paid_out, "the same day, for new merchants"


# ---- the receiver on its own --------------------------------------------------------


def test_the_receiver_checks_signatures_and_drops_repeats() -> None:
    clock = ManualClock()
    receiver = WebhookReceiver(clock)
    secret = "whsec_" + "a" * 43
    receiver.set_secret("shop", secret)
    event = {"id": "evt_" + "1" * 32, "type": "payout.paid", "data": {"object": {"id": "po_1"}}}
    body = json.dumps(event).encode()

    def deliver(signed_with: str, at_s: int, event_id: str = event["id"]) -> int:
        header = signature_header(signed_with, at_s, body)
        headers = {"Millet-Signature": header, "Millet-Event-Id": event_id}
        with httpx.Client(trust_env=False) as client:
            return client.post(receiver.url("shop"), content=body, headers=headers).status_code

    now_s = clock.now_ns() // NS_PER_S
    with receiver.serving():
        assert deliver(secret, now_s) == 200
        assert deliver(secret, now_s) == 200  # at least once: answered, and dropped
        assert deliver("whsec_" + "b" * 43, now_s) == 400
        assert deliver(secret, now_s - 3_600) == 400  # replayed from an hour ago
        assert deliver(secret, now_s, "evt_" + "2" * 32) == 400  # header and body differ
        assert receiver.wait_for([("shop", "payout.paid", "po_1")], timeout_s=1)
    assert [e.event_id for e in receiver.events] == [event["id"]]
    assert len(receiver.duplicates) == 1
    assert [r.reason for r in receiver.refused][:2] == [
        SignatureInvalid.code,
        SignatureTimestampOutsideTolerance.code,
    ]
