"""What a user has done so far, as the risk limits count it: one place for both services.

Wallet operations (top-up, withdrawal, P2P) and coin purchases are counted together.
A coin purchase counts as the operation kind risk judges it as (`RISK_KIND_OF_COIN`):
from the balance it is a balance payment (P2P's kind), by card it is money in from a
bank (top-up's). A coin payment to a checkout merchant is a `coin_payment`, with limits
of its own. Spends at the coin merchants and refunds count toward nothing. Only
operations that are pending or completed count.
"""

from __future__ import annotations

import sqlalchemy as sa

from milletpay.core.clock import NS_PER_S
from milletpay.identity.kyc import KycTier, limit_period_of
from milletpay.risk import VELOCITY_WINDOW_S, OperationKind, Usage, counts_as_balance_payment
from milletpay.risk.limits import counts_toward_limits
from milletpay.store.sql import Sql
from milletpay.wallet import periods
from milletpay.wallet.accounts import FEN_PER_COIN
from milletpay.wallet.tables import CoinOperationKind

#: How `risk` judges a coin purchase.
RISK_KIND_OF_COIN = {
    CoinOperationKind.PURCHASE_FROM_BALANCE: OperationKind.P2P,
    CoinOperationKind.PURCHASE_BY_CARD: OperationKind.TOP_UP,
    CoinOperationKind.MERCHANT_PAYMENT: OperationKind.COIN_PAYMENT,
}
#: Statuses that count toward limits (the same words in both operation tables).
COUNTED_STATUSES = ("pending", "completed")


# One pass over each operations table, in one statement: per table and kind, what was
# done since each of the three instants the limits look back to. Plain SQL: this runs
# for every operation, inside the transaction that admits it.
_SINCE = (
    "SELECT '{table}', kind, "
    "COALESCE(SUM(CASE WHEN created_at >= :day THEN {amount} ELSE 0 END), 0), "
    "COALESCE(SUM(CASE WHEN created_at >= :period THEN {amount} ELSE 0 END), 0), "
    "COALESCE(SUM(CASE WHEN created_at > :window THEN 1 ELSE 0 END), 0) "
    "FROM {table} WHERE user_id = :user AND status IN ({counted}) "
    "AND created_at >= :since GROUP BY kind"
).replace("{counted}", ", ".join(f"'{status}'" for status in COUNTED_STATUSES))
_USAGE = Sql(
    _SINCE.format(amount="amount_fen", table="wallet_operations")
    + " UNION ALL "
    + _SINCE.format(amount="amount_coins", table="coin_operations")
)


def usage(
    conn: sa.Connection, user: bytes, kind: OperationKind, tier: KycTier | None, now_ns: int
) -> Usage:
    """The user's usage for judging a new operation of risk kind `kind` at `now_ns`."""
    year = limit_period_of(tier, now_ns) if tier is not None else None
    instants = {
        "day": periods.day_start_ns(now_ns),
        "period": periods.year_start_ns(year) if year is not None else 0,
        "window": now_ns - VELOCITY_WINDOW_S * NS_PER_S,
    }
    params = {"user": user, "since": min(instants.values()), **instants}
    # (risk kind, fen per unit, amount today, amount in the tier period, operations in the
    # velocity window) per kind of operation done
    done: list[tuple[OperationKind, int, int, int, int]] = []
    for table, kind_text, day, period, count in _USAGE.run(conn, **params):
        if table == "wallet_operations":
            if counts_toward_limits(OperationKind(kind_text)):
                done.append((OperationKind(kind_text), 1, int(day), int(period), int(count)))
            continue
        risk_kind = RISK_KIND_OF_COIN.get(CoinOperationKind(kind_text))
        if risk_kind is not None:  # a spend at a coin merchant, a refund: never counted
            done.append((risk_kind, FEN_PER_COIN, int(day), int(period), int(count)))
    return Usage(
        today_fen=sum(unit * day for k, unit, day, _, _ in done if k is kind),
        operations_last_window=sum(count for *_, count in done),
        tier_period_fen=sum(
            unit * period for k, unit, _, period, _ in done if counts_as_balance_payment(k)
        ),
    )
