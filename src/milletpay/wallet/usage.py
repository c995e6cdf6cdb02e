"""What a user has done so far, as the risk limits count it: one place for both services.

Wallet operations (top-up, withdrawal, P2P) and coin purchases are counted together.
A coin purchase counts as the operation kind risk judges it as (`RISK_KIND_OF_COIN`):
from the balance it is a balance payment (P2P's kind), by card it is money in from a
bank (top-up's). Only operations that are pending or completed count.
"""

from __future__ import annotations

import sqlalchemy as sa

from milletpay.core.clock import NS_PER_S
from milletpay.identity.kyc import KycTier, limit_period_of
from milletpay.risk import VELOCITY_WINDOW_S, OperationKind, Usage, counts_as_balance_payment
from milletpay.wallet import periods
from milletpay.wallet.accounts import FEN_PER_COIN
from milletpay.wallet.tables import CoinOperationKind, coin_operations, wallet_operations

#: How `risk` judges a coin purchase.
RISK_KIND_OF_COIN = {
    CoinOperationKind.PURCHASE_FROM_BALANCE: OperationKind.P2P,
    CoinOperationKind.PURCHASE_BY_CARD: OperationKind.TOP_UP,
}
#: Statuses that count toward limits (the same words in both operation tables).
COUNTED_STATUSES = ("pending", "completed")


def usage(
    conn: sa.Connection, user: bytes, kind: OperationKind, tier: KycTier | None, now_ns: int
) -> Usage:
    """The user's usage for judging a new operation of risk kind `kind` at `now_ns`."""
    year = limit_period_of(tier, now_ns) if tier is not None else None
    period_start_ns = periods.year_start_ns(year) if year is not None else 0
    balance_kinds = [k for k in OperationKind if counts_as_balance_payment(k)]
    return Usage(
        today_fen=_fen(conn, user, [kind], periods.day_start_ns(now_ns)),
        operations_last_window=_count(conn, user, now_ns - VELOCITY_WINDOW_S * NS_PER_S),
        tier_period_fen=_fen(conn, user, balance_kinds, period_start_ns),
    )


def _fen(conn: sa.Connection, user: bytes, kinds: list[OperationKind], since_ns: int) -> int:
    """Fen of the user's counted wallet operations and coin purchases of these kinds."""
    w, c = wallet_operations.c, coin_operations.c
    coin_kinds = [k.value for k, r in RISK_KIND_OF_COIN.items() if r in kinds]
    wallet_fen = sa.select(sa.func.coalesce(sa.func.sum(w.amount_fen), 0)).where(
        w.user_id == user,
        w.status.in_(COUNTED_STATUSES),
        w.kind.in_([k.value for k in kinds]),
        w.created_at >= since_ns,
    )
    coins = sa.select(sa.func.coalesce(sa.func.sum(c.amount_coins), 0)).where(
        c.user_id == user,
        c.status.in_(COUNTED_STATUSES),
        c.kind.in_(coin_kinds),
        c.created_at >= since_ns,
    )
    return int(conn.execute(wallet_fen).scalar_one()) + FEN_PER_COIN * int(
        conn.execute(coins).scalar_one()
    )


def _count(conn: sa.Connection, user: bytes, after_ns: int) -> int:
    """The user's counted operations (wallet operations and coin purchases) after `after_ns`."""
    w, c = wallet_operations.c, coin_operations.c
    purchases = [k.value for k in RISK_KIND_OF_COIN]
    wallet_ops = sa.select(sa.func.count()).where(
        w.user_id == user, w.status.in_(COUNTED_STATUSES), w.created_at > after_ns
    )
    coin_ops = sa.select(sa.func.count()).where(
        c.user_id == user,
        c.status.in_(COUNTED_STATUSES),
        c.kind.in_(purchases),
        c.created_at > after_ns,
    )
    return int(conn.execute(wallet_ops).scalar_one()) + int(conn.execute(coin_ops).scalar_one())
