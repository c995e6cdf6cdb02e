"""Payment intents paid in coins, on both engines: only at digital-goods merchants and only
in whole coins, the coins retired and the merchant owed their CNY value from coin sales in
the intent's own transaction, holds on the purse, refunds that come back as coins, the
coin payment limits, retries that move nothing twice, and the books balanced after each
scenario (the ledger verifies, the coins issued equal the purses)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
import sqlalchemy as sa

from milletpay.checkout.errors import (
    CoinAmountNotWhole,
    CoinsNotAccepted,
    FundingNotAvailable,
    PaymentIntentConflict,
)
from milletpay.checkout.fees import fee_fen
from milletpay.checkout.intents import (
    CAPTURE_WINDOW_S,
    CancellationReason,
    CaptureMethod,
    Confirmation,
    Funding,
    IntentRequest,
    IntentStatus,
    PaymentIntent,
    PaymentIntents,
    RefundStatus,
)
from milletpay.checkout.merchants import Merchant, MerchantApplication, MerchantService
from milletpay.core.keyring import KeyRing
from milletpay.ledger import CreateTransferResult, Transfer
from milletpay.risk import LIMITS, OperationKind
from milletpay.wallet.accounts import (
    LEDGER_CNY,
    AccountCode,
    platform_account_id,
    settlement_account_id,
)
from milletpay.wallet.coins import CoinService
from milletpay.wallet.tables import CoinOperationKind, CoinOperationStatus, coin_operations

from .conftest import World, yuan

GAMES = MerchantApplication(
    "Dragon Games Co., Ltd.", "Dragon Games", "Shenzhen", "5816", "ICBC", "6222020012340001"
)
GROCER = MerchantApplication(
    "Millet Fresh Foods Co., Ltd.", "Millet Fresh", "Beijing", "5411", "ICBC", "6222020012345678"
)


@dataclass
class Events:
    """The outbox as the intents see it: every event emitted, in order."""

    emitted: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def emit(
        self, conn: sa.Connection, merchant_id: int, event_type: str, data: Mapping[str, Any]
    ) -> None:
        self.emitted.append((event_type, dict(data)))

    def types(self) -> list[str]:
        return [event_type for event_type, _ in self.emitted]


@dataclass
class Arcade:
    world: World
    coins: CoinService
    merchants: MerchantService
    intents: PaymentIntents
    games: Merchant
    grocer: Merchant
    events: Events

    def intent(
        self, amount_fen: int = 3_000, merchant: Merchant | None = None, **kw: Any
    ) -> tuple[PaymentIntent, str]:
        order = f"order-{len(self.events.emitted)}"
        target = merchant or self.games
        created = self.intents.create(target.id, IntentRequest(amount_fen, order, **kw))
        return created.intent, created.client_secret

    def confirm(self, user_id: int, intent: PaymentIntent, secret: str) -> Confirmation:
        with self.world.ledger.transaction() as tx:
            return self.intents.confirm_in(tx, user_id, intent.id, secret, Funding.COINS)

    def owed_fen(self, merchant: Merchant | None = None) -> tuple[int, int]:
        return self.merchants.balance_fen((merchant or self.games).id)

    def coin_sales_fen(self) -> int:
        (sales,) = self.world.ledger.lookup_accounts([platform_account_id(AccountCode.COIN_SALES)])
        return sales.balance_credit_minus_debit

    def fee_revenue_fen(self) -> int:
        found = self.world.ledger.lookup_accounts([platform_account_id(AccountCode.FEE_REVENUE)])
        return found[0].balance_credit_minus_debit if found else 0

    def coin_operations(self, user_id: int) -> list[Any]:
        ops = coin_operations.c
        with self.world.engine.connect() as conn:
            return list(
                conn.execute(
                    sa.select(ops.kind, ops.amount_coins, ops.status, ops.decline_code)
                    .where(ops.user_id == user_id.to_bytes(16, "big"))
                    .order_by(ops.created_at, ops.id)
                ).all()
            )


@pytest.fixture
def arcade(world: World) -> Iterator[Arcade]:
    keyring = KeyRing.generate()
    merchants = MerchantService(world.ledger, keyring, world.clock)
    coins = CoinService(
        world.ledger, world.wallet, world.identity, world.engine, world.clock, world.bank
    )
    events = Events()
    intents = PaymentIntents(
        world.ledger, world.wallet, merchants, keyring, world.clock, events=events, coins=coins
    )
    games = merchants.onboard(GAMES).merchant
    grocer = merchants.onboard(GROCER).merchant
    yield Arcade(world, coins, merchants, intents, games, grocer, events)
    assert world.ledger.verify().ok
    assert coins.coin_liability_check().balanced


def player(arcade: Arcade, coins: int = 100, level: int = 2) -> int:
    """A user with `coins` bought from a wallet topped up with 1,000 CNY."""
    person = arcade.world.person(level)
    wallet = arcade.world.wallet
    assert wallet.top_up(person.user_id, person.linked_account_id, yuan(1_000), "t1").approved
    if coins:
        assert arcade.coins.buy_with_balance(person.user_id, coins, "c1").approved
    return person.user_id


def test_coins_pay_a_digital_goods_merchant_its_cny_value_less_the_fee(arcade: Arcade) -> None:
    user = player(arcade, coins=100)
    intent, secret = arcade.intent(3_000)

    confirmed = arcade.confirm(user, intent, secret)

    done = confirmed.intent
    assert confirmed.decline_code is None
    assert (done.status, done.funding, done.amount_received_fen) == (
        IntentStatus.SUCCEEDED,
        Funding.COINS,
        3_000,
    )
    fee = fee_fen(3_000, "5816")
    assert fee == 30 and done.fee_fen == fee
    assert arcade.coins.coins(user) == 70
    assert arcade.world.wallet.balance(user).posted_fen == yuan(1_000 - 100)  # untouched
    assert arcade.owed_fen() == (3_000 - fee, 0)
    assert arcade.fee_revenue_fen() == fee
    assert arcade.coin_sales_fen() == yuan(100 - 30)  # the value moved to the merchant
    assert done.coin_operation_id == confirmed.operation_id and done.wallet_operation_id is None
    assert arcade.coin_operations(user)[-1] == ("merchant_payment", 30, "completed", None)
    assert arcade.events.types()[-1] == "payment_intent.succeeded"
    assert arcade.events.emitted[-1][1]["funding"] == "coins"


def test_a_merchant_outside_digital_goods_refuses_coins_and_nothing_changes(
    arcade: Arcade,
) -> None:
    user = player(arcade, coins=100)
    intent, secret = arcade.intent(3_000, merchant=arcade.grocer)
    emitted = len(arcade.events.emitted)

    with pytest.raises(CoinsNotAccepted) as refused:
        arcade.confirm(user, intent, secret)

    assert refused.value.code == "coins_not_accepted" and refused.value.field == "funding"
    assert "5411" in refused.value.message
    after = arcade.intents.get(arcade.grocer.id, intent.id)
    assert (after.status, after.confirm_attempts, after.funding) == (
        IntentStatus.REQUIRES_CONFIRMATION,
        0,
        None,
    )
    assert arcade.coins.coins(user) == 100
    assert arcade.owed_fen(arcade.grocer) == (0, 0)
    assert [op.kind for op in arcade.coin_operations(user)] == ["purchase_balance"]
    assert len(arcade.events.emitted) == emitted


@pytest.mark.parametrize("amount_fen", [2_550, 1, 99])
def test_an_amount_that_is_not_whole_coins_is_refused_not_rounded(
    arcade: Arcade, amount_fen: int
) -> None:
    user = player(arcade, coins=100)
    intent, secret = arcade.intent(amount_fen)

    with pytest.raises(CoinAmountNotWhole) as refused:
        arcade.confirm(user, intent, secret)

    assert (refused.value.code, refused.value.field) == ("coin_amount_not_whole", "amount_fen")
    assert arcade.intents.get(arcade.games.id, intent.id).confirm_attempts == 0
    assert arcade.coins.coins(user) == 100
    assert arcade.owed_fen() == (0, 0)


def test_too_few_coins_is_a_decline_that_leaves_the_intent_open(arcade: Arcade) -> None:
    user = player(arcade, coins=10)
    intent, secret = arcade.intent(3_000)

    declined = arcade.confirm(user, intent, secret)

    assert declined.decline_code == "insufficient_coins"
    assert declined.intent.status is IntentStatus.REQUIRES_CONFIRMATION
    assert declined.intent.confirm_attempts == 1
    assert arcade.events.types()[-1] == "payment_intent.payment_failed"
    assert arcade.coins.coins(user) == 10
    assert arcade.owed_fen() == (0, 0)
    assert arcade.coin_operations(user)[-1] == (
        "merchant_payment",
        30,
        "declined",
        "insufficient_coins",
    )
    # The payer buys more and tries again: a new attempt, paid once.
    assert arcade.coins.buy_with_balance(user, 20, "c2").approved
    paid = arcade.confirm(user, intent, secret)
    assert paid.intent.status is IntentStatus.SUCCEEDED
    assert arcade.coins.coins(user) == 0


def test_coin_payments_are_judged_by_limits_of_their_own(arcade: Arcade) -> None:
    per_transaction_fen = LIMITS[(OperationKind.COIN_PAYMENT, 1)].per_transaction_fen
    user = player(arcade, coins=per_transaction_fen // 100 + 1, level=1)
    over, over_secret = arcade.intent(per_transaction_fen + 100)
    emitted = len(arcade.events.emitted)

    declined = arcade.confirm(user, over, over_secret)

    assert declined.decline_code == "per_transaction_limit_exceeded"
    assert (declined.limit_fen, declined.remaining_fen) == (
        per_transaction_fen,
        per_transaction_fen,
    )
    assert arcade.events.types()[emitted:] == ["payment_intent.payment_failed"]
    assert arcade.coins.coins(user) == per_transaction_fen // 100 + 1
    at_limit, at_limit_secret = arcade.intent(per_transaction_fen)
    paid = arcade.confirm(user, at_limit, at_limit_secret)
    assert paid.intent.status is IntentStatus.SUCCEEDED
    assert arcade.coins.coins(user) == 1


def test_the_daily_coin_limit_counts_the_days_coin_payments_and_not_released_holds(
    arcade: Arcade,
) -> None:
    limits = LIMITS[(OperationKind.COIN_PAYMENT, 1)]
    assert (limits.per_transaction_fen, limits.daily_fen) == (yuan(500), yuan(1_000))
    person = arcade.world.person(1)
    bought = arcade.coins.buy_with_card(person.user_id, person.linked_account_id, 1_200, "c1")
    assert bought.approved
    user = person.user_id
    released, released_secret = arcade.intent(yuan(500), capture_method=CaptureMethod.MANUAL)
    arcade.confirm(user, released, released_secret)
    arcade.intents.cancel(arcade.games.id, released.id)  # a released hold counts no more
    for _ in range(2):
        intent, secret = arcade.intent(yuan(500))
        assert arcade.confirm(user, intent, secret).decline_code is None
    over, over_secret = arcade.intent(yuan(1))

    declined = arcade.confirm(user, over, over_secret)

    assert declined.decline_code == "daily_limit_exceeded"
    assert (declined.limit_fen, declined.remaining_fen) == (yuan(1_000), 0)
    assert arcade.coins.coins(user) == 200
    arcade.world.clock.advance(seconds=86_400)  # the next China-time day
    tomorrow, tomorrow_secret = arcade.intent(yuan(1))
    assert arcade.confirm(user, tomorrow, tomorrow_secret).decline_code is None


def test_a_coin_payment_is_not_a_balance_payment_again(arcade: Arcade) -> None:
    """A Class I user's balance payments stop at 1,000 CNY over the account's life; the
    coins were counted when bought, so paying with them counts toward that no more."""
    user = player(arcade, coins=400, level=1)
    intent, secret = arcade.intent(yuan(400))
    assert arcade.confirm(user, intent, secret).intent.status is IntentStatus.SUCCEEDED
    left = yuan(1_000 - 400)  # what the tier limit still allows
    wallet_intent, wallet_secret = arcade.intent(left)
    with arcade.world.ledger.transaction() as tx:
        paid = arcade.intents.confirm_in(tx, user, wallet_intent.id, wallet_secret)
    assert paid.decline_code is None and paid.intent.funding is Funding.WALLET


def test_a_rolled_back_confirmation_moves_nothing_and_a_retry_pays_once(arcade: Arcade) -> None:
    user = player(arcade, coins=100)
    intent, secret = arcade.intent(3_000)

    class Crash(Exception):
        pass

    with pytest.raises(Crash), arcade.world.ledger.transaction() as tx:
        arcade.intents.confirm_in(tx, user, intent.id, secret, Funding.COINS)
        raise Crash
    assert arcade.coins.coins(user) == 100 and arcade.owed_fen() == (0, 0)

    first = arcade.confirm(user, intent, secret)
    with pytest.raises(PaymentIntentConflict, match="succeeded"):
        arcade.confirm(user, intent, secret)
    assert first.intent.status is IntentStatus.SUCCEEDED
    assert arcade.coins.coins(user) == 70
    assert arcade.owed_fen() == (3_000 - 30, 0)


def test_the_coin_operation_answers_a_retry_with_its_key_and_moves_once(arcade: Arcade) -> None:
    user = player(arcade, coins=100)
    account = arcade.games.account_id
    ref = f"{arcade.games.id:032x}"
    with arcade.world.ledger.transaction() as tx:
        first = arcade.coins.pay_merchant_in(tx, user, ref, account, 25, "pay-1")
    with arcade.world.ledger.transaction() as tx:
        again = arcade.coins.pay_merchant_in(tx, user, ref, account, 25, "pay-1")

    assert again == first and first.status is CoinOperationStatus.COMPLETED
    assert first.kind is CoinOperationKind.MERCHANT_PAYMENT
    assert arcade.coins.coins(user) == 75
    assert arcade.owed_fen() == (2_500, 0)  # no fee: this is the coin side alone


def test_a_manual_intent_holds_the_coins_then_takes_part(arcade: Arcade) -> None:
    user = player(arcade, coins=100)
    intent, secret = arcade.intent(5_000, capture_method=CaptureMethod.MANUAL)

    held = arcade.confirm(user, intent, secret).intent

    assert held.status is IntentStatus.REQUIRES_CAPTURE and held.amount_capturable_fen == 5_000
    assert arcade.events.types()[-1] == "payment_intent.requires_capture"
    assert arcade.owed_fen() == (0, 0)  # the merchant is owed nothing until the capture
    # The held coins cannot be spent elsewhere.
    spend = arcade.coins.spend(user, "app_store", 51, "s1")
    assert spend.decline_code == "insufficient_coins"
    with pytest.raises(CoinAmountNotWhole):
        arcade.intents.capture(arcade.games.id, intent.id, 2_550)
    assert arcade.intents.get(arcade.games.id, intent.id).status is IntentStatus.REQUIRES_CAPTURE

    captured = arcade.intents.capture(arcade.games.id, intent.id, 3_000)

    assert (captured.status, captured.amount_received_fen) == (IntentStatus.SUCCEEDED, 3_000)
    assert arcade.coins.coins(user) == 70  # 20 coins released
    assert arcade.owed_fen() == (3_000 - 30, 0)
    assert arcade.coin_sales_fen() == yuan(70)
    (payment,) = [op for op in arcade.coin_operations(user) if op.kind == "merchant_payment"]
    assert payment == ("merchant_payment", 30, "completed", None)  # it shows what was taken
    assert arcade.coins.spend(user, "app_store", 70, "s2").approved


def test_cancel_releases_the_coin_hold(arcade: Arcade) -> None:
    user = player(arcade, coins=100)
    intent, secret = arcade.intent(5_000, capture_method=CaptureMethod.MANUAL)
    arcade.confirm(user, intent, secret)

    canceled = arcade.intents.cancel(arcade.games.id, intent.id)

    assert canceled.status is IntentStatus.CANCELED
    assert arcade.coins.coins(user) == 100
    assert arcade.owed_fen() == (0, 0)
    assert arcade.coin_operations(user)[-1].status == "canceled"
    assert arcade.coins.spend(user, "app_store", 100, "s1").approved  # the hold is gone


def test_the_sweep_releases_a_coin_hold_whose_capture_window_lapsed(arcade: Arcade) -> None:
    user = player(arcade, coins=100)
    intent, secret = arcade.intent(5_000, capture_method=CaptureMethod.MANUAL)
    arcade.confirm(user, intent, secret)
    arcade.world.clock.advance(seconds=CAPTURE_WINDOW_S)

    assert arcade.intents.sweep() == 1

    lapsed = arcade.intents.get(arcade.games.id, intent.id)
    assert lapsed.cancellation_reason is CancellationReason.CAPTURE_WINDOW_LAPSED
    assert arcade.coins.coins(user) == 100
    assert arcade.coins.spend(user, "app_store", 100, "s1").approved


def test_refunds_return_coins_in_part_then_the_rest_with_the_fee(arcade: Arcade) -> None:
    user = player(arcade, coins=100)
    intent, secret = arcade.intent(3_000)
    arcade.confirm(user, intent, secret)

    first = arcade.intents.refund(arcade.games.id, intent.id, 1_000, "one level")

    assert (first.status, first.amount_fen) == (RefundStatus.SUCCEEDED, 1_000)
    assert arcade.coins.coins(user) == 80
    assert arcade.world.wallet.balance(user).posted_fen == yuan(900)  # coins, never cash
    fee_back = 10  # 30 × 1,000 ÷ 3,000
    assert arcade.owed_fen() == (3_000 - 30 - 1_000 + fee_back, 0)
    with pytest.raises(CoinAmountNotWhole):
        arcade.intents.refund(arcade.games.id, intent.id, 550)

    rest = arcade.intents.refund(arcade.games.id, intent.id)

    assert rest.amount_fen == 2_000
    assert arcade.coins.coins(user) == 100
    assert arcade.owed_fen() == (0, 0)
    assert arcade.fee_revenue_fen() == 0
    assert arcade.coin_sales_fen() == yuan(100)  # the value is back behind the coins
    assert arcade.events.types()[-2:] == ["refund.succeeded", "refund.succeeded"]
    kinds = [(op.kind, op.amount_coins, op.status) for op in arcade.coin_operations(user)]
    assert kinds[-2:] == [
        ("merchant_refund", 10, "completed"),
        ("merchant_refund", 20, "completed"),
    ]
    refunds = arcade.intents.refunds(arcade.games.id, intent.id)
    assert [r.amount_fen for r in refunds] == [1_000, 2_000]


def test_a_coin_refund_the_merchant_cannot_fund_fails_and_moves_nothing(arcade: Arcade) -> None:
    user = player(arcade, coins=100)
    intent, secret = arcade.intent(3_000)
    arcade.confirm(user, intent, secret)
    # The merchant's money leaves (as a payout would): it is owed 100 fen now.
    payout = Transfer(
        987_654_322,
        arcade.games.account_id,
        settlement_account_id("ICBC"),
        3_000 - 30 - 100,
        LEDGER_CNY,
        99,
    )
    assert arcade.world.ledger.create_transfers([payout]) == [CreateTransferResult.OK]

    refund = arcade.intents.refund(arcade.games.id, intent.id, 2_000)

    assert (refund.status, refund.failure_code) == (
        RefundStatus.FAILED,
        "merchant_balance_insufficient",
    )
    assert arcade.coins.coins(user) == 70
    assert arcade.owed_fen() == (100, 0)
    assert arcade.fee_revenue_fen() == 30  # the fee's return was undone too
    assert arcade.events.types()[-1] == "refund.failed"
    assert arcade.coin_operations(user)[-1].status == "declined"


def test_without_the_coin_service_coins_fund_nothing(arcade: Arcade) -> None:
    world = arcade.world
    bare = PaymentIntents(
        world.ledger, world.wallet, arcade.merchants, KeyRing.generate(), world.clock
    )
    user = player(arcade, coins=100)
    created = bare.create(arcade.games.id, IntentRequest(3_000, "bare-1"))
    with pytest.raises(FundingNotAvailable), world.ledger.transaction() as tx:
        bare.confirm_in(tx, user, created.intent.id, created.client_secret, Funding.COINS)
    assert arcade.coins.coins(user) == 100
