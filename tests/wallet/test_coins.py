"""Coins: bought once per key, spent only on digital goods, refunded only on shutdown, and
the coin liability always equal to the coins users hold."""

from __future__ import annotations

import contextlib
import inspect
import itertools
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from milletpay.risk import DeclineCode
from milletpay.wallet import (
    CHART,
    LEDGER_COINS,
    MERCHANTS,
    AccountCode,
    CoinDeclineCode,
    CoinMerchantNotDigitalGoods,
    CoinMerchantShutDown,
    CoinMerchantUnknown,
    CoinOperationStatus,
    CoinService,
    CoinSpendNotFulfillable,
    IdempotencyKeyReused,
    MerchantCategory,
    settlement_account_id,
)
from milletpay.wallet.accounts import platform_account_id

from .conftest import BANK, Person, World, yuan

#: Every public method of `CoinService`. None moves coins back to CNY: a new one must be
#: added here on purpose, after checking it does not.
PUBLIC_METHODS = {
    "open_purse",
    "coins",
    "buy_with_balance",
    "buy_with_card",
    "spend",
    "mark_fulfilled",
    "refund_service_shutdown",
    "coin_liability_check",
    # A checkout merchant paid in coins, its hold ended, its refund back as coins: the CNY
    # value goes to the merchant, never to the user (tests/wallet/test_checkout_coins.py).
    "pay_merchant_in",
    "end_merchant_hold_in",
    "receive_refund_in",
}


@pytest.fixture
def coins(world: World) -> CoinService:
    return CoinService(
        world.ledger, world.wallet, world.identity, world.engine, world.clock, world.bank
    )


@pytest.fixture
def holder(world: World) -> Person:
    """One user for a whole hypothesis run: the world outlives each example."""
    return funded(world, wallet_yuan=10_000)


def funded(world: World, level: int = 2, wallet_yuan: int = 1_000) -> Person:
    person = world.person(level)
    top_up = world.wallet.top_up(person.user_id, person.linked_account_id, yuan(wallet_yuan), "t")
    assert top_up.approved
    return person


def assert_books_hold(world: World, coins: CoinService) -> None:
    """The invariants after every scenario: the liability equals the purses, the ledger
    verifies, and coin sales (CNY) were never debited: coins never turned back into cash."""
    liability = coins.coin_liability_check()
    assert liability.balanced, liability
    assert world.ledger.verify().ok
    sales = world.ledger.lookup_accounts([platform_account_id(AccountCode.COIN_SALES)])
    assert not sales or sales[0].debits_posted == 0


def coin_sales_fen(world: World) -> int:
    (sales,) = world.ledger.lookup_accounts([platform_account_id(AccountCode.COIN_SALES)])
    return sales.balance_credit_minus_debit


def test_buying_coins_with_balance_moves_the_price_to_coin_sales_and_issues_the_coins(
    world: World, coins: CoinService
) -> None:
    alice = funded(world)

    bought = coins.buy_with_balance(alice.user_id, 60, "c1")

    assert bought.approved and bought.amount_coins == 60
    assert coins.coins(alice.user_id) == 60
    assert world.balance_fen(alice) == yuan(1_000 - 60)
    assert coin_sales_fen(world) == yuan(60)
    assert coins.coin_liability_check().liability_coins == 60
    assert CHART[AccountCode.COIN_PURSE].ledger == LEDGER_COINS
    assert_books_hold(world, coins)


def test_buying_coins_by_card_debits_the_bank_and_credits_coin_sales_from_settlement(
    world: World, coins: CoinService
) -> None:
    alice = world.person(2)
    bank_before = world.bank.balance_fen(BANK, alice.account_number)

    bought = coins.buy_with_card(alice.user_id, alice.linked_account_id, 30, "card-1")

    assert bought.approved
    assert coins.coins(alice.user_id) == 30
    assert world.bank.balance_fen(BANK, alice.account_number) == bank_before - yuan(30)
    assert world.balance_fen(alice) == 0
    (settlement,) = world.ledger.lookup_accounts([settlement_account_id(BANK)])
    assert settlement.balance_debit_minus_credit == yuan(30)
    assert coin_sales_fen(world) == yuan(30)
    assert_books_hold(world, coins)


def test_a_retried_purchase_moves_money_and_coins_once(world: World, coins: CoinService) -> None:
    alice = funded(world)
    bank_before = world.bank.balance_fen(BANK, alice.account_number)

    first = coins.buy_with_balance(alice.user_id, 10, "c1")
    again = coins.buy_with_balance(alice.user_id, 10, "c1")
    by_card = coins.buy_with_card(alice.user_id, alice.linked_account_id, 5, "card-1")
    card_again = coins.buy_with_card(alice.user_id, alice.linked_account_id, 5, "card-1")

    assert first == again and by_card == card_again
    assert coins.coins(alice.user_id) == 15
    assert world.balance_fen(alice) == yuan(1_000 - 10)
    assert world.bank.balance_fen(BANK, alice.account_number) == bank_before - yuan(5)
    with pytest.raises(IdempotencyKeyReused):
        coins.buy_with_balance(alice.user_id, 11, "c1")
    assert coins.coins(alice.user_id) == 15
    assert_books_hold(world, coins)


def test_a_purchase_beyond_the_wallet_balance_is_declined_and_moves_nothing(
    world: World, coins: CoinService
) -> None:
    alice = funded(world, wallet_yuan=50)

    declined = coins.buy_with_balance(alice.user_id, 51, "c1")

    assert declined.status is CoinOperationStatus.DECLINED
    assert declined.decline_code == CoinDeclineCode.INSUFFICIENT_BALANCE
    assert (coins.coins(alice.user_id), world.balance_fen(alice)) == (0, yuan(50))
    assert_books_hold(world, coins)


def test_a_card_purchase_the_bank_declines_issues_no_coins(
    world: World, coins: CoinService
) -> None:
    alice = world.person(2)
    world.bank.close_account(BANK, alice.account_number)

    declined = coins.buy_with_card(alice.user_id, alice.linked_account_id, 5, "card-1")

    assert declined.decline_code == CoinDeclineCode.BANK_DECLINED
    assert declined.reason == "account_closed"
    assert coins.coins(alice.user_id) == 0
    assert_books_hold(world, coins)


def test_coins_bought_with_balance_count_toward_the_tier_limit_on_balance_payments(
    world: World, coins: CoinService
) -> None:
    alice, bob = funded(world, level=1, wallet_yuan=2_000), world.person(1)
    assert world.wallet.p2p(alice.user_id, bob.phone, yuan(600), "p1").approved

    over = coins.buy_with_balance(alice.user_id, 500, "c1")

    assert over.decline_code == DeclineCode.TIER_LIMIT_EXCEEDED
    assert (over.limit, over.remaining) == (yuan(1_000), yuan(400))
    assert coins.buy_with_balance(alice.user_id, 400, "c2").approved
    assert coins.buy_with_balance(alice.user_id, 1, "c3").decline_code == (
        DeclineCode.TIER_LIMIT_EXCEEDED
    )
    # by card it is not a balance payment: the tier limit does not apply
    assert coins.buy_with_card(alice.user_id, alice.linked_account_id, 100, "card-1").approved
    assert coins.coins(alice.user_id) == 500
    assert_books_hold(world, coins)


def test_p2p_counts_coins_already_bought_with_balance_toward_the_tier_limit(
    world: World, coins: CoinService
) -> None:
    alice, bob = funded(world, level=1, wallet_yuan=2_000), world.person(1)
    assert coins.buy_with_balance(alice.user_id, 700, "c1").approved

    over = world.wallet.p2p(alice.user_id, bob.phone, yuan(400), "p1")

    assert over.decline_code == DeclineCode.TIER_LIMIT_EXCEEDED
    assert (over.limit, over.remaining) == (yuan(1_000), yuan(300))
    assert world.wallet.p2p(alice.user_id, bob.phone, yuan(300), "p2").approved
    assert_books_hold(world, coins)


def test_spending_at_a_digital_goods_merchant_retires_the_coins(
    world: World, coins: CoinService
) -> None:
    alice = funded(world)
    coins.buy_with_balance(alice.user_id, 60, "c1")

    spent = coins.spend(alice.user_id, "theme_store", 25, "s1")
    again = coins.spend(alice.user_id, "theme_store", 25, "s1")

    assert spent.approved and spent == again and spent.merchant_id == "theme_store"
    assert coins.coins(alice.user_id) == 35
    assert coins.coin_liability_check().liability_coins == 35
    assert coin_sales_fen(world) == yuan(60)  # the CNY stays with Millet Pay
    assert_books_hold(world, coins)


def test_spending_at_an_unknown_or_non_digital_goods_merchant_is_refused(
    world: World, coins: CoinService
) -> None:
    alice = funded(world)
    coins.buy_with_balance(alice.user_id, 60, "c1")

    with pytest.raises(CoinMerchantUnknown) as unknown:
        coins.spend(alice.user_id, "no_such_shop", 5, "s1")
    with pytest.raises(CoinMerchantNotDigitalGoods) as groceries:
        coins.spend(alice.user_id, "lotus_mart", 5, "s2")

    assert unknown.value.code == "coin_merchant_unknown"
    assert groceries.value.code == "coin_merchant_not_digital_goods"
    assert "groceries" in str(groceries.value)
    assert coins.coins(alice.user_id) == 60
    assert_books_hold(world, coins)


def test_spending_more_coins_than_held_is_declined(world: World, coins: CoinService) -> None:
    alice = funded(world)
    coins.buy_with_balance(alice.user_id, 20, "c1")

    declined = coins.spend(alice.user_id, "game_center", 21, "s1")

    assert declined.decline_code == CoinDeclineCode.INSUFFICIENT_COINS
    assert coins.coins(alice.user_id) == 20
    assert coins.spend(alice.user_id, "game_center", 20, "s2").approved
    assert coins.coins(alice.user_id) == 0
    assert_books_hold(world, coins)


def test_a_shutdown_refunds_unfulfilled_spends_only_and_only_once(
    world: World, coins: CoinService
) -> None:
    alice, bob = funded(world), funded(world)
    coins.buy_with_balance(alice.user_id, 100, "c1")
    coins.buy_with_balance(bob.user_id, 100, "c1")
    delivered = coins.spend(alice.user_id, "millet_video", 30, "s1")
    coins.spend(alice.user_id, "millet_video", 20, "s2")
    coins.spend(bob.user_id, "millet_video", 15, "s1")
    coins.spend(bob.user_id, "millet_music", 40, "s2")  # another merchant: untouched
    coins.mark_fulfilled(alice.user_id, delivered.operation_id)

    refund = coins.refund_service_shutdown("millet_video")
    again = coins.refund_service_shutdown("millet_video")

    assert (refund.spends_refunded, refund.coins_refunded) == (2, 35)
    assert (again.spends_refunded, again.coins_refunded) == (0, 0)
    assert coins.coins(alice.user_id) == 100 - 30
    assert coins.coins(bob.user_id) == 100 - 40
    refunded = coins.spend(bob.user_id, "millet_video", 15, "s1")  # the retry sees the refund
    assert refunded.status is CoinOperationStatus.REFUNDED
    with pytest.raises(CoinSpendNotFulfillable):
        coins.mark_fulfilled(bob.user_id, refunded.operation_id)
    with pytest.raises(CoinMerchantShutDown):
        coins.spend(alice.user_id, "millet_video", 1, "s3")
    assert_books_hold(world, coins)


def test_no_method_turns_coins_back_into_cny(world: World, coins: CoinService) -> None:
    public = {
        name
        for name, _ in inspect.getmembers(CoinService, inspect.isfunction)
        if not name.startswith("_")
    }
    assert public == PUBLIC_METHODS
    alice = funded(world)
    coins.buy_with_balance(alice.user_id, 50, "c1")
    coins.spend(alice.user_id, "app_store", 20, "s1")
    coins.refund_service_shutdown("app_store")

    assert coins.coins(alice.user_id) == 50
    assert world.balance_fen(alice) == yuan(1_000 - 50)  # the shutdown refund is in coins
    assert coin_sales_fen(world) == yuan(50)
    assert_books_hold(world, coins)


def test_the_coin_liability_equals_the_purses_throughout(world: World, coins: CoinService) -> None:
    people = [funded(world) for _ in range(3)]
    assert coins.coin_liability_check().balanced
    for n, person in enumerate(people):
        coins.buy_with_balance(person.user_id, 10 * (n + 1), "c1")
        assert_books_hold(world, coins)
        coins.spend(person.user_id, "dragon_quest", 5, "s1")
        assert_books_hold(world, coins)
    coins.refund_service_shutdown("dragon_quest")

    check = coins.coin_liability_check()
    assert check.liability_coins == check.purses_coins == 10 + 20 + 30
    assert_books_hold(world, coins)


def test_concurrent_retries_of_one_card_purchase_debit_the_bank_once(
    world: World, coins: CoinService
) -> None:
    alice = world.person(2, bank_balance_fen=yuan(1_000))

    def attempt(_: int) -> object:
        return coins.buy_with_card(alice.user_id, alice.linked_account_id, 100, "card-1")

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(attempt, range(8)))

    assert all(outcome == outcomes[0] for outcome in outcomes)
    assert world.bank.balance_fen(BANK, alice.account_number) == yuan(900)
    assert coins.coins(alice.user_id) == 100
    assert_books_hold(world, coins)


DIGITAL = sorted(m.merchant_id for m in MERCHANTS.values() if m.category in set(MerchantCategory))
_keys = itertools.count()
OPERATION = st.one_of(
    st.tuples(st.just("buy"), st.integers(1, 40), st.just("")),
    st.tuples(st.just("spend"), st.integers(1, 40), st.sampled_from(DIGITAL)),
    st.tuples(st.just("fulfil"), st.just(0), st.just("")),
    st.tuples(st.just("shutdown"), st.just(0), st.sampled_from(DIGITAL)),
)


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(operations=st.lists(OPERATION, min_size=1, max_size=8))
def test_the_coin_liability_equals_the_purses_after_any_sequence(
    world: World, coins: CoinService, holder: Person, operations: list[tuple[str, int, str]]
) -> None:
    user_id = holder.user_id
    spends: list[int] = []
    for op, amount, merchant in operations:
        key = f"k{next(_keys)}"
        if op == "buy":
            coins.buy_with_balance(user_id, amount, key)
        elif op == "spend":
            try:
                outcome = coins.spend(user_id, merchant, amount, key)
            except CoinMerchantShutDown:
                continue
            if outcome.approved:
                spends.append(outcome.operation_id)
        elif op == "fulfil" and spends:
            with contextlib.suppress(CoinSpendNotFulfillable):  # refunded by a shutdown since
                coins.mark_fulfilled(user_id, spends.pop(0))
        elif op == "shutdown":
            coins.refund_service_shutdown(merchant)
        assert_books_hold(world, coins)


def test_a_purchase_left_pending_by_a_crash_completes_on_retry_without_moving_twice(
    world: World, coins: CoinService, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = funded(world)

    def crash(*_: object, **__: object) -> None:
        raise RuntimeError("the process died after the ledger batch")

    with monkeypatch.context() as patched:
        patched.setattr(coins, "_finish", crash)
        with pytest.raises(RuntimeError):
            coins.buy_with_balance(alice.user_id, 70, "c1")
    assert coins.coins(alice.user_id) == 70

    retried = coins.buy_with_balance(alice.user_id, 70, "c1")

    assert retried.approved
    assert coins.coins(alice.user_id) == 70
    assert world.balance_fen(alice) == yuan(1_000 - 70)
    assert_books_hold(world, coins)
