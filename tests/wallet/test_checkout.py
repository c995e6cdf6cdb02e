"""Merchants and payment intents paid from the wallet, on both engines: onboarding and
API keys, the intent's statuses, the money in the ledger at every transition (the
payer's wallet, the merchant's balance, the fee), retries that never pay twice, and the
refusals that change nothing."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from milletpay.checkout.errors import (
    ApiKeyLimitReached,
    ApiKeyNotFound,
    MerchantInvalid,
    MerchantOrderReused,
    PaymentIntentConflict,
    PaymentIntentInvalid,
    PaymentIntentNotFound,
)
from milletpay.checkout.fees import DEFAULT_MDR_BPS, fee_fen, mdr_bps
from milletpay.checkout.intents import (
    CAPTURE_WINDOW_S,
    CONFIRM_ATTEMPTS_MAX,
    HOLD_BACKSTOP_S,
    CancellationReason,
    CaptureMethod,
    Confirmation,
    IntentRequest,
    IntentStatus,
    PaymentIntent,
    PaymentIntents,
    RefundStatus,
    public_id,
)
from milletpay.checkout.merchants import (
    API_KEYS_PER_MERCHANT_MAX,
    ApiKeyKind,
    Merchant,
    MerchantApplication,
    MerchantService,
)
from milletpay.checkout.payouts import PAYOUT_MIN_FEN, Payouts, PayoutStatus
from milletpay.core.keyring import KeyRing
from milletpay.ledger import CreateTransferResult, Transfer
from milletpay.wallet.accounts import (
    LEDGER_CNY,
    AccountCode,
    platform_account_id,
    settlement_account_id,
)

from .conftest import World, yuan

GROCER = MerchantApplication(
    "Millet Fresh Foods Co., Ltd.", "Millet Fresh", "Beijing", "5411", "ICBC", "6222020012345678"
)


@dataclass
class Shop:
    world: World
    merchants: MerchantService
    intents: PaymentIntents
    merchant: Merchant
    secret_key: str

    def intent(
        self, amount_fen: int = 2_500, order: str = "order-1", **kw: Any
    ) -> tuple[PaymentIntent, str]:
        created = self.intents.create(self.merchant.id, IntentRequest(amount_fen, order, **kw))
        return created.intent, created.client_secret

    def confirm(self, user_id: int, intent: PaymentIntent, secret: str) -> Confirmation:
        """The wallet's confirmation, in a transaction of its own."""
        with self.world.ledger.transaction() as tx:
            return self.intents.confirm_with_wallet_in(tx, user_id, intent.id, secret)

    def owed_fen(self) -> tuple[int, int]:
        return self.merchants.balance_fen(self.merchant.id)


@pytest.fixture
def shop(world: World) -> Iterator[Shop]:
    keyring = KeyRing.generate()
    merchants = MerchantService(world.ledger, keyring, world.clock)
    intents = PaymentIntents(world.ledger, world.wallet, merchants, keyring, world.clock)
    onboarded = merchants.onboard(GROCER)
    yield Shop(world, merchants, intents, onboarded.merchant, onboarded.secret_key.text)
    assert world.ledger.verify().ok


def payer(shop: Shop, balance_fen: int = yuan(500), level: int = 2) -> int:
    person = shop.world.person(level)
    if balance_fen:
        outcome = shop.world.wallet.top_up(
            person.user_id, person.linked_account_id, balance_fen, "t1"
        )
        assert outcome.decline_code is None
    return person.user_id


# -- merchants and keys -----------------------------------------------------------------


def test_onboarding_opens_an_account_and_gives_a_key_of_each_kind(shop: Shop) -> None:
    merchant = shop.merchant
    assert (merchant.display_name, merchant.mcc, merchant.digital_goods) == (
        "Millet Fresh",
        "5411",
        False,
    )
    assert merchant.settlement_account_masked == "************5678"
    assert shop.owed_fen() == (0, 0)
    keys = shop.merchants.keys(merchant.id)
    assert [k.kind for k in keys] == [ApiKeyKind.SECRET, ApiKeyKind.PUBLISHABLE]
    assert shop.secret_key.startswith("sk_live_") and keys[0].hint.endswith(shop.secret_key[-4:])
    assert keys[0].publishable_key is None and keys[1].publishable_key.startswith("pk_live_")  # type: ignore[union-attr]
    assert shop.merchants.authenticate(shop.secret_key) == (merchant, ApiKeyKind.SECRET)
    assert shop.merchants.settlement_account_number(merchant.id) == "6222020012345678"


def test_the_secret_key_is_never_stored(shop: Shop) -> None:
    with shop.world.engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT * FROM merchant_api_keys").all()
        merchant_rows = conn.exec_driver_sql("SELECT * FROM merchants").all()
    stored = repr(rows).encode() + repr(merchant_rows).encode()
    assert shop.secret_key.encode() not in stored
    assert b"6222020012345678" not in stored  # the settlement account is sealed


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("legal_name", ""),
        ("display_name", "A name longer than twenty-five"),
        ("city", "Guangzhou City Centre"),
        ("mcc", "54111"),
        ("settlement_bank_code", "NOPE"),
        ("settlement_account_number", "12345"),
        ("legal_name", "Line\nbreak"),
        ("name_latin", "Millet Fresh Market"),  # display_name is ASCII already
        ("name_language", "zh"),  # nor is anything outside ASCII
    ],
)
def test_an_application_with_a_bad_field_is_refused_naming_it(
    shop: Shop, field: str, value: str
) -> None:
    before = len(shop.merchants.keys(shop.merchant.id))
    fields = {
        "legal_name": GROCER.legal_name,
        "display_name": GROCER.display_name,
        "city": GROCER.city,
        "mcc": GROCER.mcc,
        "settlement_bank_code": GROCER.settlement_bank_code,
        "settlement_account_number": GROCER.settlement_account_number,
        field: value,
    }
    with pytest.raises(MerchantInvalid) as refused:
        shop.merchants.onboard(MerchantApplication(**fields))
    assert refused.value.field == field
    assert len(shop.merchants.keys(shop.merchant.id)) == before


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"display_name": "兰亭茶馆", "name_language": "zh"}, "name_latin"),
        ({"city": "杭州", "name_language": "zh"}, "city_latin"),
        ({"display_name": "兰亭茶馆", "name_latin": "Lanting Teahouse"}, "name_language"),
        (
            {"display_name": "兰亭茶馆", "name_latin": "L" * 26, "name_language": "zh"},
            "name_latin",
        ),
        ({"city": "杭州", "city_latin": "Hangzhou\tCity", "name_language": "zh"}, "city_latin"),
    ],
)
def test_a_name_outside_ascii_needs_its_latin_form_within_the_qr_bounds(
    shop: Shop, changes: dict[str, str], field: str
) -> None:
    with pytest.raises(MerchantInvalid) as refused:
        shop.merchants.onboard(dataclasses.replace(GROCER, **changes))
    assert refused.value.field == field


def test_a_chinese_name_is_stored_with_its_latin_form(shop: Shop) -> None:
    application = dataclasses.replace(
        GROCER,
        display_name="兰亭茶馆",
        city="杭州",
        name_latin="Lanting Teahouse",
        city_latin="Hangzhou",
        name_language="ZH",
    )
    made = shop.merchants.onboard(application).merchant
    stored = shop.merchants.merchant(made.id)
    assert stored == made
    assert (stored.display_name, stored.qr_name, stored.qr_city) == (
        "兰亭茶馆",
        "Lanting Teahouse",
        "Hangzhou",
    )
    assert stored.name_language == "zh"
    assert (shop.merchant.qr_name, shop.merchant.name_language) == ("Millet Fresh", None)


def test_a_revoked_key_signs_nothing_and_revoking_again_answers_the_same(shop: Shop) -> None:
    second = shop.merchants.create_key(shop.merchant.id, ApiKeyKind.SECRET)
    assert shop.merchants.authenticate(second.text) is not None
    revoked = shop.merchants.revoke_key(shop.merchant.id, second.key.id)
    assert revoked.revoked_at_ns is not None
    assert shop.merchants.authenticate(second.text) is None
    assert shop.merchants.revoke_key(shop.merchant.id, second.key.id) == revoked
    assert shop.merchants.authenticate(shop.secret_key) is not None  # the first still works


def test_another_merchants_key_cannot_be_revoked(shop: Shop) -> None:
    other = shop.merchants.onboard(GROCER)
    with pytest.raises(ApiKeyNotFound):
        shop.merchants.revoke_key(shop.merchant.id, other.secret_key.key.id)
    assert shop.merchants.authenticate(other.secret_key.text) is not None


def test_a_merchant_holds_a_bounded_number_of_live_keys(shop: Shop) -> None:
    for _ in range(API_KEYS_PER_MERCHANT_MAX - 2):
        shop.merchants.create_key(shop.merchant.id, ApiKeyKind.SECRET)
    with pytest.raises(ApiKeyLimitReached):
        shop.merchants.create_key(shop.merchant.id, ApiKeyKind.PUBLISHABLE)


@pytest.mark.parametrize(
    "text", ["", "sk_live_", "sk_live_unknown", "pk_live_x", "Bearer x", "sk_live_" + "a" * 80]
)
def test_anything_but_a_live_key_authenticates_nobody(shop: Shop, text: str) -> None:
    assert shop.merchants.authenticate(text) is None


# -- fees -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount_fen", "mcc", "fee"),
    [
        (2_500, "5411", 10),
        (2_500, "5812", 15),
        (100, "5411", 0),
        (132, "5411", 1),
        (10_000, "8398", 0),
        (1, "5816", 0),
        (50, "5816", 1),
    ],
)
def test_the_fee_is_the_mccs_rate_rounded_half_up(amount_fen: int, mcc: str, fee: int) -> None:
    assert fee_fen(amount_fen, mcc) == fee


def test_an_unlisted_mcc_pays_the_default_rate() -> None:
    assert mdr_bps("7999") == DEFAULT_MDR_BPS == 60


# -- automatic capture ------------------------------------------------------------------


def test_a_confirmed_intent_moves_the_money_and_takes_the_fee(shop: Shop) -> None:
    user = payer(shop)
    intent, secret = shop.intent(2_500)
    assert intent.status is IntentStatus.REQUIRES_CONFIRMATION
    confirmed = shop.confirm(user, intent, secret)
    assert confirmed.decline_code is None
    done = confirmed.intent
    assert (done.status, done.amount_received_fen, done.fee_fen) == (
        IntentStatus.SUCCEEDED,
        2_500,
        10,
    )
    assert shop.world.wallet.balance(user).posted_fen == yuan(500) - 2_500
    assert shop.owed_fen() == (2_490, 0)
    (revenue,) = shop.world.ledger.lookup_accounts([platform_account_id(AccountCode.FEE_REVENUE)])
    assert revenue.credits_posted == 10
    history = shop.world.wallet.history(user).items
    assert str(history[0].kind) == "merchant_payment" and history[0].amount_fen == 2_500


def test_confirming_again_is_a_conflict_and_pays_nothing(shop: Shop) -> None:
    user = payer(shop)
    intent, secret = shop.intent()
    shop.confirm(user, intent, secret)
    with pytest.raises(PaymentIntentConflict, match="succeeded"):
        shop.confirm(user, intent, secret)
    assert shop.world.wallet.balance(user).posted_fen == yuan(500) - 2_500


def test_a_wrong_client_secret_is_not_found(shop: Shop) -> None:
    user = payer(shop)
    intent, secret = shop.intent()
    with pytest.raises(PaymentIntentNotFound):
        shop.confirm(user, intent, secret[:-1] + ("A" if secret[-1] != "A" else "B"))
    _, other_secret = shop.intent(order="order-2")
    with pytest.raises(PaymentIntentNotFound):
        shop.confirm(user, intent, other_secret)  # another intent's secret
    assert (
        shop.intents.get(shop.merchant.id, intent.id).status is IntentStatus.REQUIRES_CONFIRMATION
    )


def test_a_decline_leaves_the_intent_waiting_until_the_payer_can_pay(shop: Shop) -> None:
    user = payer(shop, balance_fen=1_000)
    intent, secret = shop.intent(2_500)
    declined = shop.confirm(user, intent, secret)
    assert declined.decline_code == "insufficient_balance"
    assert (declined.intent.status, declined.intent.confirm_attempts) == (
        IntentStatus.REQUIRES_CONFIRMATION,
        1,
    )
    assert shop.owed_fen() == (0, 0)
    # The payer tops up and tries again.
    top = shop.world.wallet.top_up(user, _link_of(shop, user), 2_000, "t2")
    assert top.decline_code is None
    paid = shop.confirm(user, intent, secret)
    assert paid.intent.status is IntentStatus.SUCCEEDED
    assert shop.world.wallet.balance(user).posted_fen == 3_000 - 2_500


def test_the_intent_fails_after_its_attempts(shop: Shop) -> None:
    user = payer(shop, balance_fen=100)
    intent, secret = shop.intent(2_500)
    for _ in range(CONFIRM_ATTEMPTS_MAX):
        last = shop.confirm(user, intent, secret)
    assert last.intent.status is IntentStatus.FAILED
    with pytest.raises(PaymentIntentConflict):
        shop.confirm(user, intent, secret)


def test_a_limit_declines_naming_it(shop: Shop) -> None:
    user = payer(shop, balance_fen=yuan(2_000), level=1)
    intent, secret = shop.intent(yuan(1_001))
    declined = shop.confirm(user, intent, secret)
    assert declined.decline_code == "tier_limit_exceeded"
    assert declined.limit_fen == yuan(1_000)


def test_an_expired_intent_is_canceled_when_confirmed(shop: Shop) -> None:
    user = payer(shop)
    intent, secret = shop.intent(expires_in_s=60)
    shop.world.clock.advance(seconds=60)
    answer = shop.confirm(user, intent, secret)
    assert answer.decline_code == "payment_intent_expired"
    assert answer.intent.cancellation_reason is CancellationReason.EXPIRED
    assert shop.world.wallet.balance(user).posted_fen == yuan(500)


# -- orders and input -------------------------------------------------------------------


def test_an_order_is_charged_by_one_intent(shop: Shop) -> None:
    first = shop.intents.create(shop.merchant.id, IntentRequest(2_500, "order-9"))
    again = shop.intents.create(shop.merchant.id, IntentRequest(2_500, "order-9"))
    assert (again.intent.id, again.created, again.client_secret) == (
        first.intent.id,
        False,
        first.client_secret,
    )
    with pytest.raises(MerchantOrderReused):
        shop.intents.create(shop.merchant.id, IntentRequest(2_600, "order-9"))


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"amount_fen": 0}, "amount_fen"),
        ({"amount_fen": 10**10 + 1}, "amount_fen"),
        ({"currency": "USD"}, "currency"),
        ({"merchant_order_id": "has space"}, "merchant_order_id"),
        ({"merchant_order_id": "x" * 65}, "merchant_order_id"),
        ({"description": "d" * 501}, "description"),
        ({"metadata": {f"k{i}": "v" for i in range(21)}}, "metadata"),
        ({"metadata": {"k": "v" * 501}}, "metadata"),
        ({"expires_in_s": 59}, "expires_in_s"),
        ({"expires_in_s": 7 * 86_400 + 1}, "expires_in_s"),
    ],
)
def test_a_bad_intent_request_is_refused_naming_the_field(
    shop: Shop, changes: dict[str, object], field: str
) -> None:
    base: dict[str, object] = {"amount_fen": 2_500, "merchant_order_id": "order-x"}
    with pytest.raises(PaymentIntentInvalid) as refused:
        shop.intents.create(shop.merchant.id, IntentRequest(**{**base, **changes}))  # type: ignore[arg-type]
    assert refused.value.field == field


def test_another_merchants_intent_is_not_found(shop: Shop) -> None:
    other = shop.merchants.onboard(GROCER).merchant
    intent, _ = shop.intent()
    for call in (shop.intents.get, shop.intents.cancel, shop.intents.capture):
        with pytest.raises(PaymentIntentNotFound):
            call(other.id, intent.id)


# -- manual capture ---------------------------------------------------------------------


def held(shop: Shop, amount_fen: int = 10_000) -> tuple[int, PaymentIntent]:
    user = payer(shop)
    intent, secret = shop.intent(amount_fen, capture_method=CaptureMethod.MANUAL)
    confirmed = shop.confirm(user, intent, secret)
    assert confirmed.intent.status is IntentStatus.REQUIRES_CAPTURE
    return user, confirmed.intent


def test_a_manual_intent_holds_the_money_until_captured(shop: Shop) -> None:
    user, intent = held(shop)
    assert intent.amount_capturable_fen == 10_000
    balance = shop.world.wallet.balance(user)
    assert balance.posted_fen == yuan(500) and balance.available_fen == yuan(500) - 10_000
    assert shop.owed_fen() == (0, 10_000)
    captured = shop.intents.capture(shop.merchant.id, intent.id)
    assert (captured.status, captured.amount_received_fen, captured.fee_fen) == (
        IntentStatus.SUCCEEDED,
        10_000,
        38,
    )
    assert shop.world.wallet.balance(user).posted_fen == yuan(500) - 10_000
    assert shop.owed_fen() == (10_000 - 38, 0)


def test_a_partial_capture_releases_the_rest(shop: Shop) -> None:
    user, intent = held(shop)
    captured = shop.intents.capture(shop.merchant.id, intent.id, 6_000)
    assert (captured.amount_received_fen, captured.amount_capturable_fen) == (6_000, 0)
    balance = shop.world.wallet.balance(user)
    assert balance.posted_fen == balance.available_fen == yuan(500) - 6_000
    assert shop.owed_fen() == (6_000 - fee_fen(6_000, "5411"), 0)
    assert shop.world.wallet.history(user).items[0].amount_fen == 6_000
    with pytest.raises(PaymentIntentConflict):
        shop.intents.capture(shop.merchant.id, intent.id, 1)


@pytest.mark.parametrize("amount_fen", [0, 10_001, -5])
def test_capturing_more_than_held_is_refused(shop: Shop, amount_fen: int) -> None:
    _, intent = held(shop)
    with pytest.raises(PaymentIntentInvalid):
        shop.intents.capture(shop.merchant.id, intent.id, amount_fen)
    assert shop.owed_fen() == (0, 10_000)


def test_canceling_a_held_intent_gives_everything_back(shop: Shop) -> None:
    user, intent = held(shop)
    canceled = shop.intents.cancel(shop.merchant.id, intent.id)
    assert (canceled.status, canceled.cancellation_reason) == (
        IntentStatus.CANCELED,
        CancellationReason.REQUESTED_BY_MERCHANT,
    )
    balance = shop.world.wallet.balance(user)
    assert balance.posted_fen == balance.available_fen == yuan(500)
    assert shop.owed_fen() == (0, 0)
    assert str(shop.world.wallet.history(user).items[0].status) == "canceled"
    with pytest.raises(PaymentIntentConflict):
        shop.intents.capture(shop.merchant.id, intent.id)


def test_the_sweep_releases_a_hold_past_its_capture_window(shop: Shop) -> None:
    user, intent = held(shop)
    waiting, _ = shop.intent(order="order-2", expires_in_s=3_600)
    shop.world.clock.advance(seconds=CAPTURE_WINDOW_S - 1)
    assert shop.intents.sweep() == 1  # the unconfirmed one expired; the hold is in its window
    assert (
        shop.intents.get(shop.merchant.id, waiting.id).cancellation_reason
        is CancellationReason.EXPIRED
    )
    shop.world.clock.advance(seconds=1)
    with pytest.raises(PaymentIntentConflict, match="capture window"):
        shop.intents.capture(shop.merchant.id, intent.id)
    assert shop.intents.sweep() == 1
    swept = shop.intents.get(shop.merchant.id, intent.id)
    assert swept.cancellation_reason is CancellationReason.CAPTURE_WINDOW_LAPSED
    assert shop.world.wallet.balance(user).available_fen == yuan(500)
    assert shop.intents.sweep() == 0


def test_a_hold_the_ledger_released_first_is_canceled_cleanly(shop: Shop) -> None:
    user, intent = held(shop)
    shop.world.clock.advance(seconds=CAPTURE_WINDOW_S + HOLD_BACKSTOP_S + 1)
    assert shop.world.ledger.expire_pending() == 1
    assert shop.intents.sweep() == 1
    assert shop.intents.get(shop.merchant.id, intent.id).status is IntentStatus.CANCELED
    assert shop.world.wallet.balance(user).available_fen == yuan(500)


def test_the_public_id_names_the_intent(shop: Shop) -> None:
    intent, secret = shop.intent()
    assert public_id(intent.id) == f"pi_{intent.id:032x}"
    assert secret.startswith(public_id(intent.id) + "_secret_")
    assert shop.intents.client_secret(shop.merchant.id, intent.id) == secret


def _link_of(shop: Shop, user_id: int) -> int:
    from milletpay.wallet.tables import linked_bank_accounts

    with shop.world.engine.connect() as conn:
        row = conn.execute(
            linked_bank_accounts.select().where(
                linked_bank_accounts.c.user_id == user_id.to_bytes(16, "big")
            )
        ).first()
    assert row is not None
    return int.from_bytes(row.id, "big")


# -- refunds ------------------------------------------------------------------------------


def paid(shop: Shop, amount_fen: int = 10_000) -> tuple[int, PaymentIntent]:
    user = payer(shop)
    intent, secret = shop.intent(amount_fen)
    done = shop.confirm(user, intent, secret).intent
    assert done.status is IntentStatus.SUCCEEDED
    return user, done


def fee_revenue(shop: Shop) -> int:
    (revenue,) = shop.world.ledger.lookup_accounts([platform_account_id(AccountCode.FEE_REVENUE)])
    return revenue.credits_posted - revenue.debits_posted


def test_a_full_refund_gives_the_payer_everything_and_the_merchant_its_fee(shop: Shop) -> None:
    user, intent = paid(shop)
    assert (intent.fee_fen, shop.owed_fen(), fee_revenue(shop)) == (38, (10_000 - 38, 0), 38)
    refund = shop.intents.refund(shop.merchant.id, intent.id, reason="out of stock")
    assert (refund.status, refund.amount_fen, refund.failure_code) == (
        RefundStatus.SUCCEEDED,
        10_000,
        None,
    )
    assert shop.world.wallet.balance(user).posted_fen == yuan(500)
    assert (shop.owed_fen(), fee_revenue(shop)) == ((0, 0), 0)
    item = shop.world.wallet.history(user).items[0]
    assert (str(item.kind), item.incoming, item.amount_fen) == ("merchant_refund", True, 10_000)


def test_partial_refunds_add_up_to_the_payment_and_return_its_fee_exactly(shop: Shop) -> None:
    user, intent = paid(shop, 9_999)
    fee = intent.fee_fen
    parts = [3_333, 3_333, 3_333]
    for part in parts:
        assert shop.intents.refund(shop.merchant.id, intent.id, part).status is (
            RefundStatus.SUCCEEDED
        )
    assert fee_revenue(shop) == 0 and shop.owed_fen() == (0, 0)
    assert shop.world.wallet.balance(user).posted_fen == yuan(500)
    assert [r.amount_fen for r in shop.intents.refunds(shop.merchant.id, intent.id)] == parts
    assert fee > 0
    with pytest.raises(PaymentIntentInvalid, match="1 to 0"):
        shop.intents.refund(shop.merchant.id, intent.id, 1)


@pytest.mark.parametrize("amount_fen", [0, 10_001, -1])
def test_refunding_more_than_is_left_is_refused(shop: Shop, amount_fen: int) -> None:
    user, intent = paid(shop)
    with pytest.raises(PaymentIntentInvalid) as refused:
        shop.intents.refund(shop.merchant.id, intent.id, amount_fen)
    assert refused.value.field == "amount_fen"
    assert shop.world.wallet.balance(user).posted_fen == yuan(500) - 10_000
    assert shop.intents.refunds(shop.merchant.id, intent.id) == []


def test_only_a_succeeded_intent_is_refunded(shop: Shop) -> None:
    intent, _ = shop.intent(order="waiting")
    with pytest.raises(PaymentIntentConflict, match="requires_confirmation"):
        shop.intents.refund(shop.merchant.id, intent.id)
    _, held_intent = held(shop)
    with pytest.raises(PaymentIntentConflict, match="requires_capture"):
        shop.intents.refund(shop.merchant.id, held_intent.id)


def test_a_refund_the_merchant_cannot_fund_fails_and_moves_nothing(shop: Shop) -> None:
    user, intent = paid(shop)
    # The merchant's money leaves (as a payout would): it is owed 100 fen now.
    payout = Transfer(
        987_654_321,
        shop.merchant.account_id,
        settlement_account_id("ICBC"),
        10_000 - 38 - 100,
        LEDGER_CNY,
        99,
    )
    assert shop.world.ledger.create_transfers([payout]) == [CreateTransferResult.OK]
    refund = shop.intents.refund(shop.merchant.id, intent.id, 5_000)
    assert (refund.status, refund.failure_code) == (
        RefundStatus.FAILED,
        "merchant_balance_insufficient",
    )
    assert shop.owed_fen() == (100, 0) and fee_revenue(shop) == 38  # the fee did not move
    assert shop.world.wallet.balance(user).posted_fen == yuan(500) - 10_000
    # What it is owed it can refund (the 0.38 fen fee share of 100 fen rounds to 0).
    assert shop.intents.refund(shop.merchant.id, intent.id, 100).status is RefundStatus.SUCCEEDED
    assert shop.owed_fen() == (0, 0)


def test_refunds_count_toward_no_limit(shop: Shop) -> None:
    user, intent = paid(shop)
    for _ in range(25):  # more than the velocity limit of operations an hour
        shop.intents.refund(shop.merchant.id, intent.id, 1)
    another, secret = shop.intent(order="after-refunds")
    assert shop.confirm(user, another, secret).decline_code is None


# -- payouts -----------------------------------------------------------------------------


DAY = datetime.date(2026, 11, 26)


def payouts(shop: Shop) -> Payouts:
    return Payouts(shop.world.ledger, shop.merchants, shop.world.bank, shop.world.clock)


def test_the_days_payout_pays_what_the_merchant_is_owed_once(shop: Shop) -> None:
    bank = shop.world.bank
    bank.open_account("ICBC", GROCER.settlement_account_number, GROCER.legal_name)
    paid(shop)
    run = payouts(shop)
    (payout,) = run.run_day(DAY)
    assert (payout.status, payout.amount_fen, payout.day) == (
        PayoutStatus.PAID,
        10_000 - 38,
        20261126,
    )
    assert shop.owed_fen() == (0, 0)
    assert bank.balance_fen("ICBC", GROCER.settlement_account_number) == 10_000 - 38
    assert run.run_day(DAY) == [payout]  # the same day again: nothing moves
    assert bank.balance_fen("ICBC", GROCER.settlement_account_number) == 10_000 - 38
    assert run.run_day(DAY + datetime.timedelta(days=1)) == []  # owed nothing now


def test_a_payout_the_bank_refuses_leaves_the_money_owed(shop: Shop) -> None:
    paid(shop)  # no account at the bank: the link is refused
    (payout,) = payouts(shop).run_day(DAY)
    assert payout.status is PayoutStatus.FAILED and payout.failure_reason
    assert shop.owed_fen() == (10_000 - 38, 0)


def test_too_little_waits_for_another_day(shop: Shop) -> None:
    shop.world.bank.open_account("ICBC", GROCER.settlement_account_number, GROCER.legal_name)
    user = payer(shop)
    intent, secret = shop.intent(PAYOUT_MIN_FEN - 1)
    shop.confirm(user, intent, secret)
    assert payouts(shop).run_day(DAY) == []
    assert shop.owed_fen()[0] == PAYOUT_MIN_FEN - 1
