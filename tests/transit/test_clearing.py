"""Tap upload and clearing: idempotent upload, TACs checked, blacklisted cards held, a
day's fares to the operators exactly once, shadow balances reconciled with the cards."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import replace

import pytest
import sqlalchemy as sa

from milletpay.transit import clearing as clearing_module
from milletpay.transit import purse_crypto as pc
from milletpay.transit.accounts import float_account_id, operator_account_id
from milletpay.transit.cards import TransitCard
from milletpay.transit.clearing import (
    ClearingInputError,
    RejectReason,
    TransitClearing,
    clear_benchmark,
)
from milletpay.transit.fares import Mode
from milletpay.transit.purse import Purse
from milletpay.transit.sam import CityMasterKeys, verify_purchase_tac

from .world import DAY, Rider, World, open_world, yuan


@pytest.fixture
def world(database_url: str) -> Iterator[World]:
    yield from open_world(database_url)


def _card(
    world: World, rider: Rider, city: str = "shanghai", load_fen: int = yuan(50)
) -> tuple[TransitCard, Purse]:
    card = world.cards.issue(rider.user_id, city, rider.device_id, f"issue-{city}")
    purse = world.purse(card)
    if load_fen:
        world.load(rider, purse, card, load_fen, f"load-{city}")
    return card, purse


def _count(world: World, table: str) -> int:
    with world.engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT COUNT(*) FROM {table}")).scalar_one())


def test_an_upload_accepts_verified_records_and_the_same_upload_again_changes_nothing(
    world: World,
) -> None:
    rider = world.rider()
    card, purse = _card(world, rider)
    gate = world.gate("shanghai")
    records = [world.tap(gate, card, purse, 300), world.tap(gate, card, purse, 400)]
    first = world.clearing.upload(gate.gate_id, records)
    assert (first.received, first.accepted, first.duplicates, first.held) == (2, 2, 0, 0)
    assert world.cards.card(rider.user_id, card.card_number).shadow.spent_fen == 700
    again = world.clearing.upload(gate.gate_id, records + records[:1])
    assert (again.received, again.accepted, again.duplicates) == (3, 0, 3)
    shadow = world.cards.card(rider.user_id, card.card_number).shadow
    assert (shadow.spent_fen, shadow.pending_fen, shadow.balance_fen) == (700, 700, yuan(50) - 700)
    assert _count(world, "transit_taps") == 2


def test_a_bad_tac_is_rejected_and_kept_for_investigation(world: World) -> None:
    rider = world.rider()
    card, purse = _card(world, rider)
    gate = world.gate("shanghai")
    genuine = world.tap(gate, card, purse, 300)
    forged = replace(genuine, purchase=replace(genuine.purchase, amount_fen=30))
    report = world.clearing.upload(gate.gate_id, [forged])
    assert report.accepted == 0
    assert [(r.offline_counter, r.reason) for r in report.rejected] == [
        (0, RejectReason.TAC_INVALID)
    ]
    assert _count(world, "transit_tap_rejects") == 1
    assert world.cards.card(rider.user_id, card.card_number).shadow.spent_fen == 0
    # The forgery took no key: the genuine record is still accepted.
    assert world.clearing.upload(gate.gate_id, [genuine]).accepted == 1


def test_records_of_unknown_cards_other_cities_and_other_gates_are_rejected(
    world: World,
) -> None:
    rider = world.rider()
    card, purse = _card(world, rider, "shenzhen")
    gate = world.gate("shenzhen")
    record = world.tap(gate, card, purse, 200)
    stranger = replace(card, card_number=bytes.fromhex("51809999999999999999"))
    foreign = world.tap(gate, stranger, world.purse(stranger, balance_fen=yuan(5)), 200)
    report = world.clearing.upload(gate.gate_id, [record, replace(record, gate_id="x"), foreign])
    assert report.accepted == 1
    assert [r.reason for r in report.rejected] == [
        RejectReason.GATE_MISMATCH,
        RejectReason.CARD_UNKNOWN,
    ]
    # A city sharing Shenzhen's keys: the TAC verifies, the card is still Shenzhen's.
    shared = {"shanghai": [world.keys["shenzhen"]], "shenzhen": [world.keys["shenzhen"]]}
    clearing = TransitClearing(world.ledger, world.clock, shared, world.blacklist)
    as_shanghai = replace(world.tap(gate, card, purse, 200), city="shanghai")
    report = clearing.upload(gate.gate_id, [as_shanghai])
    assert [r.reason for r in report.rejected] == [RejectReason.CITY_MISMATCH]
    assert _count(world, "transit_tap_rejects") == 3


def test_a_blacklisted_cards_records_are_held_and_never_cleared(world: World) -> None:
    rider = world.rider()
    card, purse = _card(world, rider)
    gate = world.gate("shanghai")
    world.blacklist.cards.add(card.card_number)
    report = world.clearing.upload(gate.gate_id, [world.tap(gate, card, purse, 300)])
    assert (report.accepted, report.held) == (0, 1)
    cleared = world.clearing.clear_day("shanghai", DAY)
    assert cleared.records_cleared == 0 and cleared.transfer_ids == ()
    assert world.account_fen(float_account_id("shanghai")) == yuan(50)


def test_a_closed_cards_late_records_are_held(world: World) -> None:
    rider = world.rider()
    card, purse = _card(world, rider)
    gate = world.gate("shanghai")
    late = world.tap(gate, card, purse, 300)
    world.cards.close(rider.user_id, card.card_number)
    report = world.clearing.upload(gate.gate_id, [late])
    assert (report.accepted, report.held) == (0, 1)


def test_clearing_moves_exactly_the_days_fares_to_each_operator_and_a_rerun_moves_nothing(
    world: World,
) -> None:
    alice, bob = world.rider(), world.rider()
    card_a, purse_a = _card(world, alice)
    card_b, purse_b = _card(world, bob)
    metro, bus = world.gate("shanghai"), world.gate("shanghai", Mode.BUS)
    next_day = DAY + dt.timedelta(days=1)
    records = [
        world.tap(metro, card_a, purse_a, 300),
        world.tap(bus, card_a, purse_a, 200),
        world.tap(metro, card_b, purse_b, 500),
    ]
    tomorrow = world.tap(metro, card_b, purse_b, 400, day=next_day)
    world.clearing.upload(metro.gate_id, [r for r in records if r.gate_id == metro.gate_id])
    world.clearing.upload(bus.gate_id, [r for r in records if r.gate_id == bus.gate_id])
    world.clearing.upload(metro.gate_id, [tomorrow])
    report = world.clearing.clear_day("shanghai", DAY)
    assert (report.run, report.records_cleared) == (1, 3)
    assert dict(report.by_operator_fen) == {Mode.METRO: 800, Mode.BUS: 200}
    assert len(report.transfer_ids) == 2
    assert world.account_fen(operator_account_id("shanghai", Mode.METRO)) == 800
    assert world.account_fen(operator_account_id("shanghai", Mode.BUS)) == 200
    assert world.account_fen(float_account_id("shanghai")) == yuan(100) - 1_000
    assert (report.cards_reconciled, report.gaps) == (2, ())
    assert world.cards.card(alice.user_id, card_a.card_number).shadow.cleared_fen == 500

    rerun = world.clearing.clear_day("shanghai", DAY)
    assert (rerun.run, rerun.records_cleared, rerun.transfer_ids) == (0, 0, ())
    assert world.account_fen(operator_account_id("shanghai", Mode.METRO)) == 800

    # A record of the day uploaded late is cleared by the next run, under new ids.
    late = world.tap(metro, card_a, purse_a, 300)
    world.clearing.upload(metro.gate_id, [late])
    third = world.clearing.clear_day("shanghai", DAY)
    assert (third.run, third.records_cleared, dict(third.by_operator_fen)) == (
        2,
        1,
        {Mode.METRO: 300},
    )
    assert not set(third.transfer_ids) & set(report.transfer_ids)
    assert world.account_fen(operator_account_id("shanghai", Mode.METRO)) == 1_100
    following = world.clearing.clear_day("shanghai", next_day)
    assert dict(following.by_operator_fen) == {Mode.METRO: 400}


def test_a_shadow_balance_gap_is_reported_and_never_fixed(world: World) -> None:
    rider = world.rider()
    card, purse = _card(world, rider)
    gate = world.gate("shanghai")
    lost = world.tap(gate, card, purse, 300)
    kept = world.tap(gate, card, purse, 400)
    world.clearing.upload(gate.gate_id, [kept])  # the first record never arrives
    report = world.clearing.clear_day("shanghai", DAY)
    (gap,) = report.gaps
    assert (gap.card_number, gap.offline_counter, gap.missing_records) == (card.card_number, 1, 1)
    assert (gap.expected_fen, gap.seen_fen) == (yuan(50) - 400, yuan(50) - 700)
    assert world.cards.card(rider.user_id, card.card_number).shadow.balance_fen == yuan(50) - 400
    # The lost record arrives: the next clearing finds the books and the card agree.
    world.clearing.upload(gate.gate_id, [lost])
    assert world.clearing.clear_day("shanghai", DAY).gaps == ()


def test_a_load_that_never_reached_the_card_shows_as_a_gap(world: World) -> None:
    rider = world.rider()
    card, purse = _card(world, rider)
    request = world.load_request(purse, card, yuan(10))
    world.cards.top_up(rider.user_id, card.card_number, yuan(10), request, "lost-load")
    world.clock.advance(seconds=60)
    gate = world.gate("shanghai")
    world.clearing.upload(gate.gate_id, [world.tap(gate, card, purse, 300)])
    (gap,) = world.clearing.clear_day("shanghai", DAY).gaps
    assert (gap.expected_fen, gap.seen_fen, gap.missing_records) == (
        yuan(60) - 300,
        yuan(50) - 300,
        0,
    )


def test_an_upload_above_the_limit_is_refused_whole(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    rider = world.rider()
    card, purse = _card(world, rider)
    gate = world.gate("shanghai")
    records = [world.tap(gate, card, purse, 100) for _ in range(3)]
    monkeypatch.setattr(clearing_module, "UPLOAD_RECORDS_MAX", 2)
    with pytest.raises(ClearingInputError, match="at most 2"):
        world.clearing.upload(gate.gate_id, records)
    assert world.clearing.upload(gate.gate_id, records[:2]).accepted == 2


def test_the_upload_tac_check_agrees_with_verify_purchase_tac() -> None:
    keys = CityMasterKeys.generate()
    card_number = bytes.fromhex("31000000000000000042")
    data = pc.PurchaseData(300, 0x09, bytes(6), 7, bytes.fromhex("20261126"), bytes(3))
    tac = pc.purse_mac(pc.tac_key(keys.card_keys(card_number).dtk), data.tac_input())
    cached_key = pc.tac_key(pc.diversify(keys.tac_master_key, card_number))
    assert verify_purchase_tac(keys, card_number, data, tac)
    assert pc.purse_mac(cached_key, data.tac_input()) == tac


def test_the_benchmark_uploads_and_clears_every_record(database_url: str) -> None:
    result = clear_benchmark(2_000, database_url)
    assert (result.records, result.cards, result.gaps_total) == (2_000, 200, 0)
    assert result.total_s > 0


def test_a_torn_debit_settled_at_another_gate_comes_with_that_gates_upload(
    world: World,
) -> None:
    rider = world.rider()
    card, purse = _card(world, rider, "shenzhen")
    paid_at, settled_by = world.gate("shenzhen"), world.gate("shenzhen")
    torn = replace(world.tap(paid_at, card, purse, 300), resolved_torn=True)
    report = world.clearing.upload(settled_by.gate_id, [torn])
    assert (report.accepted, report.rejected) == (1, ())
    # Only a settled torn debit may name another gate than the one uploading it.
    other = world.tap(paid_at, card, purse, 200)
    report = world.clearing.upload(settled_by.gate_id, [other])
    assert [r.reason for r in report.rejected] == [RejectReason.GATE_MISMATCH]
