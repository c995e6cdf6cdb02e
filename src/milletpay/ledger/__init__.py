"""The double-entry ledger: every movement of money in Millet Pay is a transfer here.

The model is TigerBeetle's (accounts with four balances, two-phase transfers,
linked chains, one result per event); storage is SQLite or PostgreSQL. This
package imports no domain package.
"""

from milletpay.ledger.batcher import LedgerBatcher
from milletpay.ledger.engine import Ledger
from milletpay.ledger.types import (
    AMOUNT_MAX,
    BATCH_EVENTS_MAX,
    QUERY_LIMIT_MAX,
    U128_MAX,
    Account,
    AccountBalance,
    AccountFilter,
    AccountFilterFlags,
    AccountFlags,
    CreateAccountResult,
    CreateTransferResult,
    LedgerInputError,
    PendingStatus,
    Transfer,
    TransferFlags,
    VerifyReport,
)

__all__ = [
    "AMOUNT_MAX",
    "BATCH_EVENTS_MAX",
    "QUERY_LIMIT_MAX",
    "U128_MAX",
    "Account",
    "AccountBalance",
    "AccountFilter",
    "AccountFilterFlags",
    "AccountFlags",
    "CreateAccountResult",
    "CreateTransferResult",
    "Ledger",
    "LedgerBatcher",
    "LedgerInputError",
    "PendingStatus",
    "Transfer",
    "TransferFlags",
    "VerifyReport",
]
