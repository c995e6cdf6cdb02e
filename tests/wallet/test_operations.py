"""Top-up, withdrawal and P2P: limits first, money moved once, declines as answers."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from milletpay.identity import PhoneInvalid
from milletpay.ledger import PendingStatus
from milletpay.risk import VELOCITY_OPERATIONS_PER_HOUR_MAX, DeclineCode
from milletpay.wallet import (
    AmountInvalid,
    IdempotencyKeyInvalid,
    IdempotencyKeyReused,
    LinkedBankAccountNotFound,
    OperationStatus,
    RecipientIsSender,
    RecipientNotFound,
    TransferCode,
    WalletDeclineCode,
)
from milletpay.wallet.accounts import transfer_id

from .conftest import BANK, World, yuan

DAY_S = 86_400


def test_class_i_user_is_declined_at_the_lifetime_balance_payment_limit(world: World) -> None:
    alice, bob = world.person(1), world.person(1)
    assert world.wallet.top_up(alice.user_id, alice.linked_account_id, yuan(2_000), "t1").approved
    assert world.wallet.p2p(alice.user_id, bob.phone, yuan(600), "p1").approved

    over = world.wallet.p2p(alice.user_id, bob.phone, yuan(500), "p2")

    assert over.status is OperationStatus.DECLINED
    assert over.decline_code == DeclineCode.TIER_LIMIT_EXCEEDED
    assert (over.limit, over.remaining) == (yuan(1_000), yuan(400))
    assert world.wallet.p2p(alice.user_id, bob.phone, yuan(400), "p3").approved
    world.clock.advance(seconds=400 * DAY_S)  # lifetime: a new year does not reset it
    last = world.wallet.p2p(alice.user_id, bob.phone, 1, "p4")
    assert (last.decline_code, last.remaining) == (DeclineCode.TIER_LIMIT_EXCEEDED, 0)
    assert world.balance_fen(alice) == yuan(1_000)
    assert world.balance_fen(bob) == yuan(1_000)
    assert world.ledger.verify().ok


def test_top_ups_and_withdrawals_do_not_count_toward_the_tier_limit(world: World) -> None:
    alice, bob = world.person(1), world.person(1)
    for key, amount in (("t1", 2_000), ("t2", 2_000), ("t3", 1_000)):
        assert world.wallet.top_up(
            alice.user_id, alice.linked_account_id, yuan(amount), key
        ).approved
    assert world.wallet.withdraw(alice.user_id, alice.linked_account_id, yuan(2_000), "w1").approved

    assert world.wallet.p2p(alice.user_id, bob.phone, yuan(1_000), "p1").approved
    assert world.balance_fen(alice) == yuan(2_000)
    assert world.ledger.verify().ok


def test_p2p_by_phone_moves_money_between_wallets(world: World) -> None:
    alice, bob = world.person(2), world.person(2)
    world.wallet.top_up(alice.user_id, alice.linked_account_id, yuan(300), "t1")

    sent = world.wallet.p2p(alice.user_id, "+86 " + bob.phone, yuan(120), "red-envelope")

    assert sent.approved and sent.amount_fen == yuan(120)
    assert (world.balance_fen(alice), world.balance_fen(bob)) == (yuan(180), yuan(120))
    assert world.ledger.verify().ok


def test_p2p_to_an_unknown_phone_is_refused_and_records_nothing(world: World) -> None:
    alice = world.person(2)
    world.wallet.top_up(alice.user_id, alice.linked_account_id, yuan(300), "t1")

    with pytest.raises(RecipientNotFound) as refused:
        world.wallet.p2p(alice.user_id, "13900000000", yuan(10), "p1")

    assert refused.value.code == "recipient_not_found"
    assert "13900000000" not in str(refused.value)  # the phone is masked
    with pytest.raises(PhoneInvalid):
        world.wallet.p2p(alice.user_id, "12345", yuan(10), "p1")
    with pytest.raises(RecipientIsSender):
        world.wallet.p2p(alice.user_id, alice.phone, yuan(10), "p1")
    assert len(world.wallet.history(alice.user_id).items) == 1
    assert world.balance_fen(alice) == yuan(300)
    assert world.ledger.verify().ok


def test_p2p_above_the_balance_is_declined_for_insufficient_balance(world: World) -> None:
    alice, bob = world.person(2), world.person(2)
    world.wallet.top_up(alice.user_id, alice.linked_account_id, yuan(100), "t1")

    short = world.wallet.p2p(alice.user_id, bob.phone, yuan(100) + 1, "p1")
    too_much = world.wallet.withdraw(alice.user_id, alice.linked_account_id, yuan(101), "w1")

    assert short.decline_code == WalletDeclineCode.INSUFFICIENT_BALANCE
    assert too_much.decline_code == WalletDeclineCode.INSUFFICIENT_BALANCE
    assert (world.balance_fen(alice), world.balance_fen(bob)) == (yuan(100), 0)
    assert world.ledger.verify().ok


def test_a_retry_with_the_same_key_moves_money_once(world: World) -> None:
    alice, bob = world.person(2, bank_balance_fen=yuan(1_000)), world.person(2)
    wallet = world.wallet

    first = [
        wallet.top_up(alice.user_id, alice.linked_account_id, yuan(500), "t1"),
        wallet.p2p(alice.user_id, bob.phone, yuan(100), "p1"),
        wallet.withdraw(alice.user_id, alice.linked_account_id, yuan(50), "w1"),
    ]
    again = [
        wallet.top_up(alice.user_id, alice.linked_account_id, yuan(500), "t1"),
        wallet.p2p(alice.user_id, bob.phone, yuan(100), "p1"),
        wallet.withdraw(alice.user_id, alice.linked_account_id, yuan(50), "w1"),
    ]

    assert again == first and all(o.approved for o in first)
    assert world.bank.balance_fen(BANK, alice.account_number) == yuan(1_000 - 500 + 50)
    assert (world.balance_fen(alice), world.balance_fen(bob)) == (yuan(350), yuan(100))
    move = transfer_id(alice.user_id, "top_up", "t1", 0)
    (transfer,) = world.ledger.lookup_transfers([move])
    assert transfer.code == TransferCode.TOP_UP
    assert world.ledger.verify().ok


def test_a_declined_operation_retried_gets_the_same_decline(world: World) -> None:
    alice, bob = world.person(1), world.person(1)
    world.wallet.top_up(alice.user_id, alice.linked_account_id, yuan(2_000), "t1")
    first = world.wallet.p2p(alice.user_id, bob.phone, yuan(1_000) + 1, "p1")

    assert world.wallet.p2p(alice.user_id, bob.phone, yuan(1_000) + 1, "p1") == first
    assert first.decline_code == DeclineCode.TIER_LIMIT_EXCEEDED
    assert world.ledger.verify().ok


def test_the_same_key_with_a_different_amount_is_refused(world: World) -> None:
    alice, bob = world.person(2), world.person(2)
    world.wallet.top_up(alice.user_id, alice.linked_account_id, yuan(100), "t1")

    with pytest.raises(IdempotencyKeyReused) as refused:
        world.wallet.top_up(alice.user_id, alice.linked_account_id, yuan(200), "t1")
    with pytest.raises(IdempotencyKeyReused):
        world.wallet.p2p(alice.user_id, bob.phone, yuan(100), "t1")

    assert refused.value.code == "idempotency_key_reused"
    assert "t1" in refused.value.message
    assert world.balance_fen(alice) == yuan(100)
    assert len(world.wallet.history(alice.user_id).items) == 1
    assert world.ledger.verify().ok


def test_a_bank_decline_on_withdrawal_voids_the_hold_and_restores_the_balance(
    world: World,
) -> None:
    alice = world.person(2)
    world.wallet.top_up(alice.user_id, alice.linked_account_id, yuan(300), "t1")
    world.bank.close_account(BANK, alice.account_number)

    declined = world.wallet.withdraw(alice.user_id, alice.linked_account_id, yuan(200), "w1")

    assert declined.status is OperationStatus.DECLINED
    assert (declined.decline_code, declined.reason) == ("bank_declined", "account_closed")
    balance = world.wallet.balance(alice.user_id)
    assert (balance.posted_fen, balance.available_fen) == (yuan(300), yuan(300))
    hold = transfer_id(alice.user_id, "withdraw", "w1", 0)
    assert world.ledger.pending_status(hold) is PendingStatus.VOIDED
    assert (
        world.wallet.withdraw(alice.user_id, alice.linked_account_id, yuan(200), "w1") == declined
    )
    assert world.ledger.verify().ok


def test_a_withdrawal_posts_its_hold_once_the_bank_credits(world: World) -> None:
    alice = world.person(2, bank_balance_fen=yuan(300))
    world.wallet.top_up(alice.user_id, alice.linked_account_id, yuan(300), "t1")

    assert world.wallet.withdraw(alice.user_id, alice.linked_account_id, yuan(120), "w1").approved

    hold = transfer_id(alice.user_id, "withdraw", "w1", 0)
    assert world.ledger.pending_status(hold) is PendingStatus.POSTED
    assert world.balance_fen(alice) == yuan(180)
    assert world.bank.balance_fen(BANK, alice.account_number) == yuan(120)
    assert world.ledger.verify().ok


def test_a_top_up_the_bank_declines_credits_nothing(world: World) -> None:
    alice = world.person(2, bank_balance_fen=yuan(50))

    declined = world.wallet.top_up(alice.user_id, alice.linked_account_id, yuan(51), "t1")

    assert (declined.decline_code, declined.reason) == ("bank_declined", "insufficient_funds")
    assert world.balance_fen(alice) == 0
    assert world.ledger.verify().ok


def test_the_daily_limit_allows_exactly_the_limit_and_resets_at_cst_midnight(
    world: World,
) -> None:
    alice = world.person(1)  # Class I top-up: 2,000 CNY a time, 5,000 CNY a day
    for key, amount in (("t1", 2_000), ("t2", 2_000), ("t3", 1_000)):
        assert world.wallet.top_up(
            alice.user_id, alice.linked_account_id, yuan(amount), key
        ).approved

    over = world.wallet.top_up(alice.user_id, alice.linked_account_id, 1, "t4")

    assert over.decline_code == DeclineCode.DAILY_LIMIT_EXCEEDED
    assert (over.limit, over.remaining) == (yuan(5_000), 0)
    now_s = world.clock.now_ns() // 10**9
    world.clock.advance(seconds=DAY_S - (now_s + 8 * 3600) % DAY_S)  # next midnight, China time
    assert world.wallet.top_up(alice.user_id, alice.linked_account_id, 1, "t5").approved
    assert world.ledger.verify().ok


def test_the_per_transaction_limit_names_itself(world: World) -> None:
    alice = world.person(1)

    over = world.wallet.top_up(alice.user_id, alice.linked_account_id, yuan(2_000) + 1, "t1")

    assert over.decline_code == DeclineCode.PER_TRANSACTION_LIMIT_EXCEEDED
    assert over.limit == yuan(2_000)
    assert world.ledger.verify().ok


def test_velocity_allows_the_maximum_per_rolling_hour_then_declines(world: World) -> None:
    alice = world.person(2)
    for n in range(VELOCITY_OPERATIONS_PER_HOUR_MAX):
        assert world.wallet.top_up(alice.user_id, alice.linked_account_id, 1, f"t{n}").approved
        world.clock.advance(seconds=60)

    over = world.wallet.top_up(alice.user_id, alice.linked_account_id, 1, "over")

    assert over.decline_code == DeclineCode.VELOCITY_EXCEEDED
    assert (over.limit, over.remaining) == (VELOCITY_OPERATIONS_PER_HOUR_MAX, 0)
    world.clock.advance(seconds=3600 - 20 * 60 + 1)  # the first top-up leaves the window
    assert world.wallet.top_up(alice.user_id, alice.linked_account_id, 1, "later").approved
    assert world.ledger.verify().ok


def test_bad_input_is_refused_and_changes_nothing(world: World) -> None:
    alice, bob = world.person(2), world.person(2)
    wallet = world.wallet

    with pytest.raises(AmountInvalid):
        wallet.top_up(alice.user_id, alice.linked_account_id, 0, "t1")
    with pytest.raises(AmountInvalid):
        wallet.top_up(alice.user_id, alice.linked_account_id, 1.5, "t1")  # type: ignore[arg-type]
    with pytest.raises(IdempotencyKeyInvalid):
        wallet.top_up(alice.user_id, alice.linked_account_id, 100, "")
    with pytest.raises(IdempotencyKeyInvalid):
        wallet.top_up(alice.user_id, alice.linked_account_id, 100, "k" * 65)
    with pytest.raises(LinkedBankAccountNotFound):
        wallet.top_up(alice.user_id, bob.linked_account_id, 100, "t1")

    assert wallet.history(alice.user_id).items == ()
    assert world.ledger.verify().ok


def test_concurrent_retries_of_one_top_up_move_money_once(world: World) -> None:
    alice = world.person(2, bank_balance_fen=yuan(1_000))

    def attempt(_: int) -> object:
        return world.wallet.top_up(alice.user_id, alice.linked_account_id, yuan(100), "t1")

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(attempt, range(8)))

    assert all(outcome == outcomes[0] for outcome in outcomes)
    assert world.bank.balance_fen(BANK, alice.account_number) == yuan(900)
    assert world.balance_fen(alice) == yuan(100)
    assert world.ledger.verify().ok


def test_concurrent_payments_never_pass_the_tier_limit_together(world: World) -> None:
    alice, bob = world.person(1), world.person(1)
    world.wallet.top_up(alice.user_id, alice.linked_account_id, yuan(2_000), "t1")

    def pay(n: int) -> bool:
        return world.wallet.p2p(alice.user_id, bob.phone, yuan(200), f"p{n}").approved

    with ThreadPoolExecutor(max_workers=8) as pool:
        approved = sum(pool.map(pay, range(8)))

    assert approved == 5  # 5 x 200 CNY is exactly Class I's 1,000 CNY
    assert world.balance_fen(bob) == yuan(1_000)
    assert world.ledger.verify().ok
