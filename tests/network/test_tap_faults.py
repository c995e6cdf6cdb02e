"""Tap to pay under faults, end to end (`sim.tap`: the reader and the phone's applet, the
acquirer, the switch and the issuer hosts on 127.0.0.1), on both engines: a bank that
answers too late leaves no hold and no charge behind, a switch that restarts mid-traffic
charges nothing twice, and a cryptogram sent again is declined."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from stdnum.cn import ric

from milletpay.acquiring.host import Completion, CompletionStatus, ResultStatus
from milletpay.banks import Bank
from milletpay.banks.keys import issuer_bins
from milletpay.core.clock import ManualClock
from milletpay.core.keyring import KeyRing
from milletpay.emv.keys import IssuerKeyStore
from milletpay.network.iso8583 import Message
from milletpay.sim.tap import TapNetwork, TapPhone, TapPlatform

RESTAURANT = "HZ581201"  # dual message: 0100 holds, 0220 completes
SUPERMARKET = "BJ541101"  # single message: 0200 posts at once
DEPOSIT_FEN = 100_000


@pytest.fixture
def platform(database_url: str) -> Iterator[TapPlatform]:
    opened = TapPlatform.open(
        database_url,
        clock=ManualClock(),
        keyring=KeyRing.generate(),
        issuer_keys=IssuerKeyStore.generate(issuer_bins()),
    )
    yield opened
    assert opened.banks.bank("ICBC").verify().ok
    opened.close()


def shopper(platform: TapPlatform, n: int = 1) -> TapPhone:
    phone = f"1391234{n:04d}"
    body = f"11010519800101{n:03d}"
    platform.identity.register(phone, f"Shopper {n}", body + ric.calc_check_digit(body + "0"))
    return platform.phone_of(phone, bank_code="ICBC", deposit_fen=DEPOSIT_FEN)


def balance(bank: Bank) -> tuple[int, int]:
    """(posted, held) of the one cardholder account the test opened at `bank`."""
    with bank.engine.connect() as conn:
        (account,) = conn.execute(sa.text("SELECT id FROM bank_accounts")).scalars()
    found = bank.balance(int.from_bytes(account, "big"))
    return found.posted_fen, found.held_fen


@pytest.mark.parametrize("terminal", [RESTAURANT, SUPERMARKET])
def test_a_bank_that_answers_too_late_leaves_no_hold_and_no_charge(
    platform: TapPlatform, terminal: str
) -> None:
    phone = shopper(platform)

    async def run() -> ResultStatus:
        async with TapNetwork(platform, ("ICBC",), acquirer_timeout_s=1.0) as network:
            network.issuer_delay_s["ICBC"] = 2.0
            tapped = await network.tap(phone, terminal, 4_200)
            network.issuer_delay_s.clear()
            await asyncio.sleep(2.5)  # the late answer, then the reversal, reach the bank
            assert tapped.result is not None
            return tapped.result.status

    assert asyncio.run(run()) is ResultStatus.TIMED_OUT_REVERSED
    assert balance(platform.banks.bank("ICBC")) == (DEPOSIT_FEN, 0)


def test_a_switch_restarted_mid_traffic_charges_nothing_twice(platform: TapPlatform) -> None:
    phone = shopper(platform)

    async def run() -> list[ResultStatus]:
        async with TapNetwork(platform, ("ICBC",), acquirer_timeout_s=3.0) as network:
            statuses = []
            for n in range(6):
                if n == 3:  # the switch goes away with a tap in flight, and comes back
                    network.issuer_delay_s["ICBC"] = 1.0
                    tap = asyncio.create_task(network.tap(phone, SUPERMARKET, 1_000))
                    await asyncio.sleep(0.5)
                    await network.restart_switch()
                    network.issuer_delay_s.clear()
                    statuses.append((await tap).result.status)  # type: ignore[union-attr]
                    await asyncio.sleep(1.5)  # the bank's late answer, then the reversal
                    continue
                tapped = await network.tap(phone, SUPERMARKET, 1_000)
                assert tapped.result is not None
                statuses.append(tapped.result.status)
            return statuses

    statuses = asyncio.run(run())
    approved = statuses.count(ResultStatus.APPROVED)
    assert approved >= 5 and statuses[3] is not ResultStatus.APPROVED
    # Exactly the approved taps were charged: the interrupted one was reversed.
    assert balance(platform.banks.bank("ICBC")) == (DEPOSIT_FEN - approved * 1_000, 0)


def test_a_cryptogram_sent_again_is_declined(platform: TapPlatform) -> None:
    phone = shopper(platform)

    async def run() -> tuple[str | None, str | None]:
        async with TapNetwork(platform, ("ICBC",)) as network:
            first = await network.tap(phone, SUPERMARKET, 2_000)
            assert first.result is not None and first.result.approved
            # A captured 0200 sent again as a new message: a new STAN and reference, the
            # same field 55 (the same ATC and ARQC).
            sent = first.result.request
            replay = Message(sent.mti, {**sent.fields, 11: "999999", 37: "633004999999"})
            assert network.switch is not None
            answer = await network.switch.handle(replay)
            return first.result.response_code, answer.text(39)

    assert asyncio.run(run()) == ("00", "05")
    assert balance(platform.banks.bank("ICBC")) == (DEPOSIT_FEN - 2_000, 0)


def test_a_dual_message_purchase_completed_for_less_posts_exactly_the_final_amount(
    platform: TapPlatform,
) -> None:
    """The POS keeps field 4 of its 0220 the authorized amount and gives the final amount
    only in field 95: the switch's clearing record and the bank's books take field 95."""
    phone = shopper(platform)
    authorized_fen, final_fen = 4_200, 3_150

    async def run() -> Completion:
        async with TapNetwork(platform, ("ICBC",)) as network:
            tapped = await network.tap(phone, RESTAURANT, authorized_fen)
            assert tapped.result is not None and tapped.result.approved
            assert balance(platform.banks.bank("ICBC")) == (DEPOSIT_FEN, authorized_fen)
            assert network.acquirer is not None
            return await network.acquirer.complete(RESTAURANT, tapped.result.rrn, final_fen)

    completion = asyncio.run(run())
    assert completion.status is CompletionStatus.COMPLETED
    assert completion.advice is not None
    assert int(completion.advice.text(4)) == authorized_fen  # the POS's field 4 ...
    assert int(completion.advice.text(95)[:12]) == final_fen  # ... and its final amount
    assert balance(platform.banks.bank("ICBC")) == (DEPOSIT_FEN - final_fen, 0)
    (record,) = platform.books.clearing_records()
    assert (record.amount_fen, record.completed_fen, str(record.status)) == (
        authorized_fen,
        final_fen,
        "completed",
    )
