"""Errors a caller of a bank must fix. A decline is never one of these: it is an answer."""

from __future__ import annotations

from milletpay.core.errors import MilletError


class BankInputError(MilletError, ValueError):
    """A request the bank cannot read (an amount that is not whole fen, a bad reference)."""

    code = "bank_invalid_input"


class BankUnknown(MilletError, KeyError):
    code = "bank_unknown"


class BankAccountNotFound(MilletError, KeyError):
    code = "bank_account_not_found"


class CardNotFound(MilletError, KeyError):
    code = "bank_card_not_found"


class RemoteOpeningNotOffered(MilletError):
    """The bank's data has no `remote_opening`: it opens no account in-app."""

    code = "bank_remote_opening_not_offered"
