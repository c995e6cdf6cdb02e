"""A bank's authorization service: every response code, holds, completion, reversal."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor

import pytest

from milletpay.banks import (
    AUTH_HOLD_TIMEOUT_S,
    PIN_TRIES_MAX,
    AccountStatus,
    AuthorizationRequest,
    BankInputError,
    CardStatus,
    Channel,
    ResponseCode,
)
from milletpay.banks.cardnumbers import make_pan
from milletpay.banks.chart import BankAccountCode
from milletpay.banks.data import bank_spec

from .conftest import BankWorld, cnp_request, pin_request, yuan

R = ResponseCode


def test_a_pin_payment_within_balance_is_approved_and_holds_the_amount(world: BankWorld) -> None:
    holder = world.holder(deposit_fen=yuan(1_000))
    answer = holder.bank.authorize(pin_request(holder, yuan(300), "rrn-1"))
    assert answer.response_code is R.APPROVED and answer.approved
    assert len(answer.approval_code) == 6 and answer.hold_id and answer.authorization_id
    balance = holder.bank.balance(holder.account_id)
    assert (balance.posted_fen, balance.held_fen, balance.available_fen) == (
        yuan(1_000),
        yuan(300),
        yuan(700),
    )
    assert holder.bank.verify().ok


def test_a_card_not_present_payment_with_the_right_cvn2_is_approved(world: BankWorld) -> None:
    holder = world.holder()
    assert holder.bank.authorize(cnp_request(holder, yuan(10), "rrn-1")).approved


def test_a_contactless_payment_needs_no_pin_or_cvn2(world: BankWorld) -> None:
    holder = world.holder()
    request = AuthorizationRequest("rrn-1", holder.card.pan, yuan(10), Channel.CONTACTLESS)
    assert holder.bank.authorize(request).approved


def test_05_when_the_cvn2_is_wrong(world: BankWorld) -> None:
    holder = world.holder()
    wrong = f"{(int(holder.card.cvn2) + 1) % 1000:03d}"
    answer = holder.bank.authorize(cnp_request(holder, yuan(10), "rrn-1", cvn2=wrong))
    assert (answer.response_code, answer.reason) == (R.DO_NOT_HONOUR, "cvn2_mismatch")
    assert answer.hold_id == 0 and answer.approval_code == ""


def test_05_when_card_not_present_comes_without_cvn2(world: BankWorld) -> None:
    holder = world.holder()
    answer = holder.bank.authorize(cnp_request(holder, yuan(10), "rrn-1", cvn2=None))
    assert answer.response_code is R.DO_NOT_HONOUR


def test_14_for_a_pan_the_bank_never_issued(world: BankWorld) -> None:
    holder = world.holder()
    other = holder.card.pan[:-2] + ("00" if holder.card.pan[-2:] != "00" else "11")
    unknown = make_pan(bank_spec("ICBC").products[0].iin, 999_999_999)
    assert holder.bank.authorize(pin_request(holder, 100, "rrn-1", pan=unknown)).response_code is (
        R.INVALID_CARD
    )
    # Not even a valid PAN (wrong Luhn digit, most likely): 14 as well.
    assert holder.bank.authorize(pin_request(holder, 100, "rrn-2", pan=other)).response_code is (
        R.INVALID_CARD
    )


def test_14_when_routed_by_iin_no_bank_issues(world: BankWorld) -> None:
    request = AuthorizationRequest("rrn-1", "4111111111111111", 100, Channel.CONTACTLESS)
    assert world.banks.authorize(request).response_code is R.INVALID_CARD


def test_the_registry_routes_a_pan_to_its_issuer(world: BankWorld) -> None:
    holder = world.holder("CMB")
    assert world.banks.authorize(pin_request(holder, 100, "rrn-1")).approved
    assert world.banks.bank_for_pan(holder.card.pan) is holder.bank


def test_51_when_the_amount_is_above_the_balance(world: BankWorld) -> None:
    holder = world.holder(deposit_fen=yuan(100))
    assert holder.bank.authorize(pin_request(holder, yuan(100), "rrn-1")).approved
    answer = holder.bank.authorize(pin_request(holder, 1, "rrn-2"))
    assert (answer.response_code, answer.reason) == (R.INSUFFICIENT_FUNDS, "insufficient_funds")
    assert holder.bank.verify().ok


def test_a_credit_card_spends_up_to_its_limit_then_51(world: BankWorld) -> None:
    holder = world.holder(product="credit", credit_limit_fen=yuan(2_000))
    assert holder.bank.authorize(pin_request(holder, yuan(2_000), "rrn-1")).approved
    assert holder.bank.authorize(pin_request(holder, 1, "rrn-2")).response_code is (
        R.INSUFFICIENT_FUNDS
    )
    assert holder.bank.complete("rrn-1", yuan(2_000)).ok
    assert holder.bank.balance(holder.account_id).owed_fen == yuan(2_000)
    assert holder.bank.deposit(holder.account_id, yuan(500), "repay-1")
    assert holder.bank.balance(holder.account_id).owed_fen == yuan(1_500)
    assert holder.bank.authorize(pin_request(holder, yuan(500), "rrn-3")).approved
    assert holder.bank.verify().ok


def test_54_for_a_card_past_its_expiry_month(world: BankWorld) -> None:
    holder = world.holder()
    years = bank_spec("ICBC").product("debit").expiry_years
    world.clock.advance(seconds=(years * 366 + 31) * 86_400)
    # Far in the future a hold's expiry is irrelevant; the card itself has lapsed.
    answer = holder.bank.authorize(pin_request(holder, 100, "rrn-1"))
    assert (answer.response_code, answer.reason) == (R.EXPIRED_CARD, "card_expired")


def test_54_for_a_card_marked_expired_or_a_wrong_expiry(world: BankWorld) -> None:
    holder = world.holder()
    answer = holder.bank.authorize(pin_request(holder, 100, "rrn-1", expiry_yymm="0101"))
    assert (answer.response_code, answer.reason) == (R.EXPIRED_CARD, "expiry_mismatch")
    holder.bank.set_card_status(holder.card.card_id, CardStatus.EXPIRED)
    assert holder.bank.authorize(pin_request(holder, 100, "rrn-2")).response_code is R.EXPIRED_CARD


def test_55_for_a_wrong_pin_then_75_once_the_tries_run_out(world: BankWorld) -> None:
    holder = world.holder()
    codes = [
        holder.bank.authorize(pin_request(holder, 100, f"rrn-{i}", pin="000000")).response_code
        for i in range(PIN_TRIES_MAX)
    ]
    assert codes == [R.INCORRECT_PIN] * (PIN_TRIES_MAX - 1) + [R.PIN_TRIES_EXCEEDED]
    # Locked: even the right PIN is refused.
    assert holder.bank.authorize(pin_request(holder, 100, "rrn-x")).response_code is (
        R.PIN_TRIES_EXCEEDED
    )


def test_a_right_pin_clears_the_wrong_tries(world: BankWorld) -> None:
    holder = world.holder()
    for i in range(PIN_TRIES_MAX - 1):
        holder.bank.authorize(pin_request(holder, 100, f"wrong-{i}", pin="000000"))
    assert holder.bank.authorize(pin_request(holder, 100, "right")).approved
    for i in range(PIN_TRIES_MAX - 1):
        answer = holder.bank.authorize(pin_request(holder, 100, f"again-{i}", pin="000000"))
        assert answer.response_code is R.INCORRECT_PIN


def test_a_retried_wrong_pin_counts_once(world: BankWorld) -> None:
    holder = world.holder()
    for _ in range(PIN_TRIES_MAX + 2):
        answer = holder.bank.authorize(pin_request(holder, 100, "same-rrn", pin="000000"))
        assert answer.response_code is R.INCORRECT_PIN
    assert holder.bank.authorize(pin_request(holder, 100, "next")).approved


def test_57_for_a_currency_the_card_does_not_allow(world: BankWorld) -> None:
    holder = world.holder()
    answer = holder.bank.authorize(pin_request(holder, 100, "rrn-1", currency="USD"))
    assert (answer.response_code, answer.reason) == (
        R.NOT_PERMITTED_TO_CARDHOLDER,
        "currency_not_supported",
    )


def test_61_above_the_per_transaction_limit_and_exactly_the_limit_passes(
    world: BankWorld,
) -> None:
    holder = world.holder(deposit_fen=yuan(200_000))
    limit = bank_spec("ICBC").product("debit").per_transaction_limit_fen
    answer = holder.bank.authorize(pin_request(holder, limit + 1, "rrn-1"))
    assert (answer.response_code, answer.reason) == (
        R.EXCEEDS_AMOUNT_LIMIT,
        "per_transaction_limit",
    )
    assert holder.bank.authorize(pin_request(holder, limit, "rrn-2")).approved


def test_61_above_the_daily_card_limit(world: BankWorld) -> None:
    holder = world.holder(deposit_fen=yuan(500_000))
    product = bank_spec("ICBC").product("debit")
    per, daily = product.per_transaction_limit_fen, product.daily_limit_fen
    for i in range(daily // per):
        assert holder.bank.authorize(pin_request(holder, per, f"rrn-{i}")).approved
    answer = holder.bank.authorize(pin_request(holder, 1, "rrn-over"))
    assert (answer.response_code, answer.reason) == (R.EXCEEDS_AMOUNT_LIMIT, "daily_limit")
    # A reversal gives the day's room back; the next China day starts afresh.
    assert holder.bank.reverse("rrn-0").ok
    assert holder.bank.authorize(pin_request(holder, per, "rrn-again")).approved
    world.clock.advance(seconds=86_400)
    assert holder.bank.authorize(pin_request(holder, per, "rrn-tomorrow")).approved


@pytest.mark.parametrize("status", [CardStatus.BLOCKED, CardStatus.LOST])
def test_62_for_a_blocked_or_lost_card(world: BankWorld, status: CardStatus) -> None:
    holder = world.holder()
    holder.bank.set_card_status(holder.card.card_id, status)
    answer = holder.bank.authorize(pin_request(holder, 100, "rrn-1"))
    assert (answer.response_code, answer.reason) == (R.RESTRICTED_CARD, f"card_{status.value}")


def test_62_for_a_frozen_account(world: BankWorld) -> None:
    holder = world.holder()
    holder.bank.set_account_status(holder.account_id, AccountStatus.FROZEN)
    answer = holder.bank.authorize(pin_request(holder, 100, "rrn-1"))
    assert (answer.response_code, answer.reason) == (R.RESTRICTED_CARD, "account_frozen")


def test_91_while_the_bank_is_offline_and_a_retry_is_decided_afresh(world: BankWorld) -> None:
    holder = world.holder()
    holder.bank.set_online(False)
    assert holder.bank.authorize(pin_request(holder, 100, "rrn-1")).response_code is (
        R.ISSUER_INOPERATIVE
    )
    holder.bank.set_online(True)
    assert holder.bank.authorize(pin_request(holder, 100, "rrn-1")).approved


def test_96_when_something_unexpected_fails_inside_the_bank(
    world: BankWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    holder = world.holder()

    def broken(*_args: object) -> bytes:
        raise RuntimeError("the PIN device is gone")

    monkeypatch.setattr(holder.bank, "pin_value", broken)
    answer = holder.bank.authorize(pin_request(holder, 100, "rrn-1"))
    assert answer.response_code is R.SYSTEM_MALFUNCTION
    monkeypatch.undo()
    assert holder.bank.authorize(pin_request(holder, 100, "rrn-1")).approved
    assert holder.bank.verify().ok


def test_a_retried_authorization_gets_the_first_answer_and_one_hold(world: BankWorld) -> None:
    holder = world.holder(deposit_fen=yuan(1_000))
    first = holder.bank.authorize(pin_request(holder, yuan(100), "rrn-1"))
    again = holder.bank.authorize(pin_request(holder, yuan(100), "rrn-1"))
    assert (again.response_code, again.approval_code, again.hold_id) == (
        first.response_code,
        first.approval_code,
        first.hold_id,
    )
    assert holder.bank.balance(holder.account_id).held_fen == yuan(100)


def test_a_reference_used_again_for_another_request_is_94_and_holds_nothing(
    world: BankWorld,
) -> None:
    holder, other = world.holder(deposit_fen=yuan(1_000)), world.holder()
    assert holder.bank.authorize(pin_request(holder, yuan(100), "rrn-1")).response_code == "00"
    for changed in (
        pin_request(holder, yuan(101), "rrn-1"),  # another amount
        cnp_request(holder, yuan(100), "rrn-1"),  # another channel
        pin_request(other, yuan(100), "rrn-1"),  # another card
    ):
        answer = holder.bank.authorize(changed)
        assert (answer.response_code, answer.reason) == ("94", "reference_reused")
        assert not answer.hold_id
    assert holder.bank.balance(holder.account_id).held_fen == yuan(100)
    assert other.bank.balance(other.account_id).held_fen == 0
    assert holder.bank.verify().ok


def test_complete_posts_the_whole_hold(world: BankWorld) -> None:
    holder = world.holder(deposit_fen=yuan(1_000))
    holder.bank.authorize(pin_request(holder, yuan(300), "rrn-1"))
    answer = holder.bank.complete("rrn-1", yuan(300))
    assert (answer.ok, answer.status, answer.completed_fen) == (True, "completed", yuan(300))
    balance = holder.bank.balance(holder.account_id)
    assert (balance.posted_fen, balance.held_fen) == (yuan(700), 0)
    assert holder.bank.complete("rrn-1", yuan(300)) == answer  # idempotent
    assert holder.bank.verify().ok


def test_a_partial_completion_posts_part_and_releases_the_rest(world: BankWorld) -> None:
    holder = world.holder(deposit_fen=yuan(1_000))
    holder.bank.authorize(pin_request(holder, yuan(300), "rrn-1"))
    assert holder.bank.complete("rrn-1", yuan(120)).completed_fen == yuan(120)
    balance = holder.bank.balance(holder.account_id)
    assert (balance.posted_fen, balance.held_fen, balance.available_fen) == (
        yuan(880),
        0,
        yuan(880),
    )
    network_id = holder.bank.own_account_id(BankAccountCode.NETWORK_SETTLEMENT)
    (network,) = holder.bank.ledger.lookup_accounts([network_id])
    assert network.credits_posted == yuan(120)
    assert holder.bank.verify().ok


def test_completing_more_than_was_authorized_is_refused(world: BankWorld) -> None:
    holder = world.holder()
    holder.bank.authorize(pin_request(holder, yuan(10), "rrn-1"))
    answer = holder.bank.complete("rrn-1", yuan(10) + 1)
    assert (answer.ok, answer.status) == (False, "amount_exceeds_authorization")
    assert holder.bank.balance(holder.account_id).held_fen == yuan(10)


def test_reverse_voids_the_hold_and_is_idempotent(world: BankWorld) -> None:
    holder = world.holder(deposit_fen=yuan(1_000))
    holder.bank.authorize(pin_request(holder, yuan(300), "rrn-1"))
    assert holder.bank.reverse("rrn-1").ok
    assert holder.bank.reverse("rrn-1").ok
    balance = holder.bank.balance(holder.account_id)
    assert (balance.posted_fen, balance.held_fen) == (yuan(1_000), 0)
    completed = holder.bank.complete("rrn-1", yuan(300))
    assert (completed.ok, completed.status) == (False, "reversed")
    assert holder.bank.verify().ok


def test_reversing_a_completed_authorization_gives_the_money_back_once(
    world: BankWorld,
) -> None:
    # A single-message 0200 is completed at once; when its answer never reached the
    # acquirer, the acquirer's 0400 must undo the payment, not only a hold.
    holder = world.holder(deposit_fen=yuan(1_000))
    holder.bank.authorize(pin_request(holder, yuan(10), "rrn-1"))
    holder.bank.complete("rrn-1", yuan(10))
    assert holder.bank.balance(holder.account_id).posted_fen == yuan(990)
    answer = holder.bank.reverse("rrn-1")
    assert (answer.ok, answer.status, answer.completed_fen) == (True, "reversed", yuan(10))
    assert holder.bank.reverse("rrn-1").ok  # again: the same, nothing moves
    balance = holder.bank.balance(holder.account_id)
    assert (balance.posted_fen, balance.held_fen) == (yuan(1_000), 0)
    assert holder.bank.complete("rrn-1", yuan(10)).status == "reversed"
    assert holder.bank.verify().ok


def test_a_reversal_before_its_authorization_makes_the_late_authorization_decline(
    world: BankWorld,
) -> None:
    holder = world.holder()
    assert holder.bank.reverse("rrn-late").ok
    answer = holder.bank.authorize(pin_request(holder, yuan(10), "rrn-late"))
    assert not answer.approved and answer.hold_id == 0
    assert holder.bank.balance(holder.account_id).held_fen == 0


def test_completing_an_unknown_authorization_is_refused(world: BankWorld) -> None:
    holder = world.holder()
    answer = holder.bank.complete("nothing", 100)
    assert (answer.ok, answer.status) == (False, "authorization_unknown")


def test_a_hold_lapses_after_its_timeout_and_can_no_longer_be_completed(world: BankWorld) -> None:
    holder = world.holder(deposit_fen=yuan(1_000))
    holder.bank.authorize(pin_request(holder, yuan(300), "rrn-1"))
    world.clock.advance(seconds=AUTH_HOLD_TIMEOUT_S + 1)
    answer = holder.bank.complete("rrn-1", yuan(300))
    assert (answer.ok, answer.status) == (False, "expired")
    assert holder.bank.balance(holder.account_id).available_fen == yuan(1_000)
    assert holder.bank.verify().ok


@pytest.mark.parametrize(
    "change",
    [{"amount_fen": 0}, {"amount_fen": -5}, {"reference": ""}, {"reference": "has space"}],
)
def test_a_malformed_request_is_a_caller_error_and_changes_nothing(
    world: BankWorld, change: dict[str, object]
) -> None:
    holder = world.holder()
    with pytest.raises(BankInputError):
        holder.bank.authorize(dataclasses.replace(pin_request(holder, 100, "rrn-1"), **change))
    assert holder.bank.balance(holder.account_id).held_fen == 0


def test_concurrent_retries_of_one_authorization_place_one_hold(world: BankWorld) -> None:
    holder = world.holder(deposit_fen=yuan(1_000))
    request = pin_request(holder, yuan(100), "rrn-1")
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _: holder.bank.authorize(request), range(16)))
    assert {(a.response_code, a.hold_id) for a in answers} == {(R.APPROVED, answers[0].hold_id)}
    assert holder.bank.balance(holder.account_id).held_fen == yuan(100)
    assert holder.bank.verify().ok
