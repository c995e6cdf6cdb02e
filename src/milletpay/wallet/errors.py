"""Errors of the wallet: input the caller must fix. A decline is not an error."""

from __future__ import annotations

from milletpay.core.errors import MilletError


class WalletError(MilletError):
    code = "wallet_error"


class AmountInvalid(WalletError):
    code = "amount_invalid"


class IdempotencyKeyInvalid(WalletError):
    code = "idempotency_key_invalid"


class IdempotencyKeyReused(WalletError):
    """The key was used before for a different operation (kind, amount or counterparty)."""

    code = "idempotency_key_reused"


class RecipientNotFound(WalletError):
    code = "recipient_not_found"


class RecipientIsSender(WalletError):
    code = "recipient_is_sender"


class BankUnknown(WalletError):
    code = "bank_unknown"


class BankAccountNumberInvalid(WalletError):
    code = "bank_account_number_invalid"


class BankAccountLinkDeclined(WalletError):
    code = "bank_account_link_declined"


class LinkedBankAccountNotFound(WalletError):
    code = "linked_bank_account_not_found"


class CursorInvalid(WalletError):
    code = "cursor_invalid"


class CursorNotFound(WalletError):
    """A well-formed cursor that names no place in this user's history."""

    code = "cursor_not_found"


class PageLimitInvalid(WalletError):
    code = "page_limit_invalid"


class MonthInvalid(WalletError):
    code = "month_invalid"


class LedgerRefused(WalletError):
    """The ledger refused a transfer the wallet believed valid: a broken assumption."""

    code = "wallet_ledger_refused"
