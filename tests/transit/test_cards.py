"""Transit cards in the platform's books: issuance with a deposit, loads that really credit
the purse, replays, unconfirmed loads voided, moves between phones, closing."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
import sqlalchemy as sa

from milletpay.transit.accounts import (
    deposits_account_id,
    float_account_id,
    issuance_fees_account_id,
)
from milletpay.transit.cards import (
    CardMoveRefused,
    CardStatus,
    LoadReachedCard,
    LoadStatus,
    LoadTacInvalid,
    TransitCardNotActive,
    TransitCardNotFound,
    TransitPaymentDeclined,
    TransitRequestInvalid,
)
from milletpay.transit.purse import (
    LoadInit,
    Sw,
    credit_for_load_command,
    initialize_for_load_command,
    split_response,
)

from .world import BANK, LOAD_TERMINAL_ID, World, ok, open_world, yuan


@pytest.fixture
def world(database_url: str) -> Iterator[World]:
    yield from open_world(database_url)


SHANGHAI_DEPOSIT_FEN = yuan(20)


def test_issuing_a_shanghai_card_takes_the_20_yuan_deposit_apart_from_the_balance(
    world: World,
) -> None:
    rider = world.rider(yuan(500))
    card = world.cards.issue(rider.user_id, "shanghai", rider.device_id, "issue-1")
    assert len(card.card_number) == 10 and card.card_number.hex().startswith("3100")
    assert (card.city, card.device_id, card.status) == ("shanghai", rider.device_id, "active")
    assert card.deposit_fen == SHANGHAI_DEPOSIT_FEN and card.shadow.balance_fen == 0
    assert world.wallet_fen(rider) == yuan(480)
    assert world.account_fen(deposits_account_id("shanghai")) == SHANGHAI_DEPOSIT_FEN
    assert world.account_fen(issuance_fees_account_id("shanghai")) == 0
    assert world.account_fen(float_account_id("shanghai")) == 0
    # The purse made from the card's key reference loads and debits (see the load tests).
    assert world.keys["shanghai"].key_version == card.key_version


def test_an_issuance_retried_with_its_key_returns_the_same_card_and_charges_once(
    world: World,
) -> None:
    rider = world.rider(yuan(500))
    first = world.cards.issue(rider.user_id, "shanghai", rider.device_id, "issue-1")
    again = world.cards.issue(rider.user_id, "shanghai", rider.device_id, "issue-1")
    assert again == first
    assert world.wallet_fen(rider) == yuan(480)
    assert world.cards.cards(rider.user_id) == [first]


def test_a_city_without_a_deposit_issues_for_nothing(world: World) -> None:
    rider = world.rider(yuan(10))
    card = world.cards.issue(rider.user_id, "shenzhen", rider.device_id, "issue-1")
    assert card.deposit_fen == 0 and card.card_number.hex().startswith("5180")
    assert world.wallet_fen(rider) == yuan(10)


def test_an_issuance_the_wallet_cannot_pay_is_declined_and_records_nothing(world: World) -> None:
    rider = world.rider(yuan(10))
    with pytest.raises(TransitPaymentDeclined) as declined:
        world.cards.issue(rider.user_id, "shanghai", rider.device_id, "issue-1")
    assert declined.value.decline_code == "insufficient_balance"
    assert world.cards.cards(rider.user_id) == []
    assert world.wallet_fen(rider) == yuan(10)


def test_a_top_up_moves_wallet_money_to_the_float_and_credits_the_purse(world: World) -> None:
    rider = world.rider(yuan(500))
    card = world.cards.issue(rider.user_id, "shanghai", rider.device_id, "issue-1")
    purse = world.purse(card)
    top_up = world.load(rider, purse, card, yuan(50), "load-1")
    assert top_up.status is LoadStatus.CONFIRMED and top_up.online_counter == 0
    assert purse.balance_fen == yuan(50) and purse.online_counter == 1
    assert world.wallet_fen(rider) == yuan(430)
    assert world.account_fen(float_account_id("shanghai")) == yuan(50)
    assert world.cards.card(rider.user_id, card.card_number).shadow.balance_fen == yuan(50)
    assert world.cards.unconfirmed_loads() == []


def test_a_top_up_paid_by_the_linked_bank_account_leaves_the_balance_as_it_was(
    world: World,
) -> None:
    rider = world.rider(yuan(20))
    card = world.cards.issue(rider.user_id, "shanghai", rider.device_id, "issue-1")
    purse = world.purse(card)
    wallet_after_issue = world.wallet_fen(rider)
    bank_before = world.bank.balance_fen(BANK, rider.account_number)
    request = world.load_request(purse, card, yuan(80))  # more than the wallet holds
    top_up = world.cards.top_up_from_bank(
        rider.user_id, card.card_number, yuan(80), request, rider.linked_account_id, "load-b"
    )
    assert top_up.status is LoadStatus.AUTHORIZED and top_up.mac2 is not None
    again = world.cards.top_up_from_bank(
        rider.user_id, card.card_number, yuan(80), request, rider.linked_account_id, "load-b"
    )
    assert (again.load_id, again.mac2) == (top_up.load_id, top_up.mac2)  # once
    assert world.wallet_fen(rider) == wallet_after_issue
    assert world.bank.balance_fen(BANK, rider.account_number) == bank_before - yuan(80)
    assert world.account_fen(float_account_id("shanghai")) == yuan(80)


def test_a_top_up_the_bank_declines_moves_nothing(world: World) -> None:
    rider = world.rider(yuan(20))
    card = world.cards.issue(rider.user_id, "shanghai", rider.device_id, "issue-1")
    purse = world.purse(card)
    world.bank.close_account(BANK, rider.account_number)
    request = world.load_request(purse, card, yuan(30))
    declined = world.cards.top_up_from_bank(
        rider.user_id, card.card_number, yuan(30), request, rider.linked_account_id, "load-c"
    )
    assert declined.status is LoadStatus.DECLINED and declined.decline_code
    assert world.account_fen(float_account_id("shanghai")) == 0


def test_a_replayed_top_up_answers_the_same_mac2_and_moves_money_once(world: World) -> None:
    rider = world.rider(yuan(500))
    card = world.cards.issue(rider.user_id, "shanghai", rider.device_id, "issue-1")
    purse = world.purse(card)
    request = world.load_request(purse, card, yuan(50))
    first = world.cards.top_up(rider.user_id, card.card_number, yuan(50), request, "load-1")
    replay = world.cards.top_up(rider.user_id, card.card_number, yuan(50), request, "load-1")
    assert replay == first and first.status is LoadStatus.AUTHORIZED
    assert world.wallet_fen(rider) == yuan(430)
    assert world.account_fen(float_account_id("shanghai")) == yuan(50)
    assert first.mac2 is not None
    credit = credit_for_load_command(request.date, request.time, first.mac2)
    tac = ok(purse.process(credit))
    # The card spent its INITIALIZE on the first credit: the replayed MAC2 is refused.
    assert split_response(purse.process(credit))[1] == Sw.CONDITIONS_NOT_SATISFIED
    world.cards.confirm_load(rider.user_id, card.card_number, 0, tac)
    assert purse.balance_fen == yuan(50)


def test_a_second_load_at_the_same_online_counter_moves_no_money(world: World) -> None:
    rider = world.rider(yuan(500))
    card = world.cards.issue(rider.user_id, "shanghai", rider.device_id, "issue-1")
    purse = world.purse(card)
    request = world.load_request(purse, card, yuan(50))
    world.cards.top_up(rider.user_id, card.card_number, yuan(50), request, "load-1")
    again = world.cards.top_up(rider.user_id, card.card_number, yuan(50), request, "load-2")
    assert (again.status, again.refusal, again.mac2) == (
        LoadStatus.REFUSED,
        "online_counter_used",
        None,
    )
    assert world.wallet_fen(rider) == yuan(430)


def test_an_unconfirmed_load_is_listed_then_voided_back_to_the_wallet(world: World) -> None:
    rider = world.rider(yuan(500))
    card = world.cards.issue(rider.user_id, "shanghai", rider.device_id, "issue-1")
    purse = world.purse(card)
    request = world.load_request(purse, card, yuan(50))
    lost = world.cards.top_up(rider.user_id, card.card_number, yuan(50), request, "load-1")
    # CREDIT FOR LOAD never reaches the card.
    world.clock.advance(seconds=600)
    assert [t.load_id for t in world.cards.unconfirmed_loads(older_than_s=300)] == [lost.load_id]
    fresh = LoadInit.decode(
        ok(purse.process(initialize_for_load_command(1, yuan(50), LOAD_TERMINAL_ID)))
    )
    voided = world.cards.void_unconfirmed_load(
        rider.user_id, card.card_number, lost.online_counter, fresh.online_counter
    )
    assert voided.status is LoadStatus.VOIDED
    assert world.wallet_fen(rider) == yuan(480)
    assert world.account_fen(float_account_id("shanghai")) == 0
    assert world.cards.card(rider.user_id, card.card_number).shadow.loaded_fen == 0
    assert world.cards.unconfirmed_loads() == []
    # The card can be loaded again at the same counter: the host voided its approval.
    retried = world.load(rider, purse, card, yuan(50), "load-2")
    assert retried.status is LoadStatus.CONFIRMED and purse.balance_fen == yuan(50)
    assert world.wallet_fen(rider) == yuan(430)


def test_a_load_the_card_credited_is_not_voided(world: World) -> None:
    rider = world.rider(yuan(500))
    card = world.cards.issue(rider.user_id, "shanghai", rider.device_id, "issue-1")
    purse = world.purse(card)
    request = world.load_request(purse, card, yuan(50))
    top_up = world.cards.top_up(rider.user_id, card.card_number, yuan(50), request, "load-1")
    assert top_up.mac2 is not None
    tac = ok(purse.process(credit_for_load_command(request.date, request.time, top_up.mac2)))
    with pytest.raises(LoadReachedCard):
        world.cards.void_unconfirmed_load(rider.user_id, card.card_number, 0, purse.online_counter)
    with pytest.raises(LoadTacInvalid):
        world.cards.confirm_load(rider.user_id, card.card_number, 0, bytes(4))
    confirmed = world.cards.confirm_load(rider.user_id, card.card_number, 0, tac)
    assert confirmed.status is LoadStatus.CONFIRMED
    assert world.wallet_fen(rider) == yuan(430)


def test_a_wrong_mac1_is_refused_by_the_host_and_the_money_given_back(world: World) -> None:
    rider = world.rider(yuan(500))
    card = world.cards.issue(rider.user_id, "shanghai", rider.device_id, "issue-1")
    purse = world.purse(card)
    request = world.load_request(purse, card, yuan(50))
    forged = replace(request, init=replace(request.init, mac1=bytes(4)))
    refused = world.cards.top_up(rider.user_id, card.card_number, yuan(50), forged, "load-1")
    assert (refused.status, refused.refusal, refused.mac2) == (
        LoadStatus.REFUSED,
        "mac1_invalid",
        None,
    )
    assert world.wallet_fen(rider) == yuan(480)
    assert world.account_fen(float_account_id("shanghai")) == 0
    assert world.cards.card(rider.user_id, card.card_number).shadow.loaded_fen == 0


def test_a_load_request_for_another_amount_is_refused_before_anything_moves(
    world: World,
) -> None:
    rider = world.rider(yuan(500))
    card = world.cards.issue(rider.user_id, "shanghai", rider.device_id, "issue-1")
    request = world.load_request(world.purse(card), card, yuan(50))
    with pytest.raises(TransitRequestInvalid, match="5000 fen"):
        world.cards.top_up(rider.user_id, card.card_number, yuan(60), request, "load-1")
    assert world.wallet_fen(rider) == yuan(480)


def test_another_users_card_is_not_found(world: World) -> None:
    owner, other = world.rider(yuan(500)), world.rider(yuan(500))
    card = world.cards.issue(owner.user_id, "shanghai", owner.device_id, "issue-1")
    with pytest.raises(TransitCardNotFound):
        world.cards.card(other.user_id, card.card_number)
    with pytest.raises(TransitCardNotFound):
        world.cards.close(other.user_id, card.card_number)


def test_a_shanghai_card_moves_keeping_its_number_and_balance(world: World) -> None:
    rider = world.rider(yuan(500))
    card = world.cards.issue(rider.user_id, "shanghai", rider.device_id, "issue-1")
    world.load(rider, world.purse(card), card, yuan(50), "load-1")
    moved = world.cards.move_to_phone(rider.user_id, card.card_number, "phone-new")
    assert (moved.card_number, moved.device_id) == (card.card_number, "phone-new")
    assert moved.shadow.balance_fen == yuan(50)
    assert world.cards.move_to_phone(rider.user_id, card.card_number, "phone-new") == moved
    assert world.wallet_fen(rider) == yuan(430)


def test_a_shenzhen_card_moves_once_a_year_with_a_new_number_and_the_balance_refunded(
    world: World,
) -> None:
    rider = world.rider(yuan(500))
    card = world.cards.issue(rider.user_id, "shenzhen", rider.device_id, "issue-1")
    world.load(rider, world.purse(card), card, yuan(30), "load-1")
    assert world.wallet_fen(rider) == yuan(470)
    moved = world.cards.move_to_phone(rider.user_id, card.card_number, "phone-new")
    assert moved.card_number != card.card_number and moved.device_id == "phone-new"
    assert moved.shadow.balance_fen == 0 and moved.status is CardStatus.ACTIVE
    old = world.cards.card(rider.user_id, card.card_number)
    assert (old.status, old.replaced_by) == (CardStatus.REPLACED, moved.card_number)
    assert old.shadow.balance_fen == 0 and old.shadow.refunded_fen == yuan(30)
    assert world.wallet_fen(rider) == yuan(500)
    assert world.account_fen(float_account_id("shenzhen")) == 0
    # Asking again for the same move answers the new card; another move waits a year.
    assert world.cards.move_to_phone(rider.user_id, card.card_number, "phone-new") == moved
    with pytest.raises(CardMoveRefused, match="at most 1"):
        world.cards.move_to_phone(rider.user_id, moved.card_number, "phone-third")
    with pytest.raises(TransitCardNotActive):
        world.cards.top_up(
            rider.user_id,
            card.card_number,
            yuan(10),
            world.load_request(world.purse(old), old, yuan(10)),
            "load-old",
        )


def test_closing_refunds_the_shadow_balance_and_the_deposit(world: World) -> None:
    rider = world.rider(yuan(500))
    card = world.cards.issue(rider.user_id, "shanghai", rider.device_id, "issue-1")
    purse = world.purse(card)
    world.load(rider, purse, card, yuan(50), "load-1")
    gate = world.gate("shanghai")
    report = world.clearing.upload(gate.gate_id, [world.tap(gate, card, purse, 300)])
    assert report.accepted == 1
    closed = world.cards.close(rider.user_id, card.card_number)
    assert (closed.balance_refunded_fen, closed.deposit_refunded_fen) == (4_700, yuan(20))
    assert closed.card.status is CardStatus.CLOSED and closed.card.shadow.balance_fen == 0
    assert world.wallet_fen(rider) == yuan(500) - 300
    # The fare waits in the float for its clearing; the deposit is back.
    assert world.account_fen(float_account_id("shanghai")) == 300
    assert world.account_fen(deposits_account_id("shanghai")) == 0
    assert world.cards.close(rider.user_id, card.card_number) == closed
    assert world.wallet_fen(rider) == yuan(500) - 300


def test_closing_an_overdrawn_card_pays_the_overdraft_from_the_deposit(world: World) -> None:
    rider = world.rider(yuan(500))
    card = world.cards.issue(rider.user_id, "shanghai", rider.device_id, "issue-1")
    purse = world.purse(card, overdraft_fen=yuan(10))
    world.load(rider, purse, card, yuan(2), "load-1")
    gate = world.gate("shanghai")
    world.clearing.upload(gate.gate_id, [world.tap(gate, card, purse, 300)])
    assert purse.balance_fen == -100
    closed = world.cards.close(rider.user_id, card.card_number)
    assert closed.overdraft_covered_fen == 100
    assert (closed.balance_refunded_fen, closed.deposit_refunded_fen) == (0, yuan(20) - 100)
    assert closed.card.shadow.balance_fen == 0
    assert world.account_fen(float_account_id("shanghai")) == 300
    assert world.wallet_fen(rider) == yuan(500) - 300


def test_every_card_rule_names_a_city_of_the_fare_table() -> None:
    from milletpay.transit.cards import CARD_RULES
    from milletpay.transit.fares import fare_table

    assert sorted(CARD_RULES) == sorted(c.code for c in fare_table().cities)
    prefixes = [rule.card_prefix for rule in CARD_RULES.values()]
    assert len(set(prefixes)) == len(prefixes)
    assert all(len(p) == 4 and p.isdigit() for p in prefixes)


def test_the_card_tables_exist_after_the_migration(world: World) -> None:
    names = set(sa.inspect(world.engine).get_table_names())
    assert {"transit_cards", "transit_loads", "transit_taps", "transit_clearings"} <= names
