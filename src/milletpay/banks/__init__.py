"""The issuing banks: 21 partner banks and the private online bank, from one data file.

Each bank keeps its own books (its own ledger in its own database or schema): customers,
deposit and credit accounts, cards (PAN sealed, CVN2 and PIN checked under the bank's
keys), an authorization service answering ISO 8583 response codes with holds on its
ledger, and the linked-account debit and credit the wallet's `BankGateway` needs. No
bank is named in the code: what differs between banks is in `banks.toml`.
"""

from milletpay.banks.authorization import (
    AUTH_HOLD_TIMEOUT_S,
    PIN_TRIES_MAX,
    AuthorizationAnswer,
    AuthorizationRequest,
    AuthStatus,
    Channel,
    HoldAnswer,
)
from milletpay.banks.bank import Bank
from milletpay.banks.data import (
    BankDataError,
    BankSpec,
    IinRange,
    ProductSpec,
    ProductType,
    RemoteOpeningSpec,
    bank_codes,
    bank_for_pan,
    bank_spec,
    banks,
    load_banks,
)
from milletpay.banks.errors import (
    BankAccountNotFound,
    BankInputError,
    BankUnknown,
    CardNotFound,
    RemoteOpeningNotOffered,
)
from milletpay.banks.idv import IdvDecision, IdvOutcome, IdvReason
from milletpay.banks.keys import BankKeys, GeneratedBankKeys
from milletpay.banks.model import (
    AccountStatus,
    Balance,
    BankAccount,
    CardStatus,
    IssuedCard,
    OpenedAccount,
)
from milletpay.banks.registry import Banks, PartnerBankGateway
from milletpay.banks.responses import ResponseCode
from milletpay.banks.storage import BankDatabase, bank_database

__all__ = [
    "AUTH_HOLD_TIMEOUT_S",
    "PIN_TRIES_MAX",
    "AccountStatus",
    "AuthStatus",
    "AuthorizationAnswer",
    "AuthorizationRequest",
    "Balance",
    "Bank",
    "BankAccount",
    "BankAccountNotFound",
    "BankDataError",
    "BankDatabase",
    "BankInputError",
    "BankKeys",
    "BankSpec",
    "BankUnknown",
    "Banks",
    "CardNotFound",
    "CardStatus",
    "Channel",
    "GeneratedBankKeys",
    "HoldAnswer",
    "IdvDecision",
    "IdvOutcome",
    "IdvReason",
    "IinRange",
    "IssuedCard",
    "OpenedAccount",
    "PartnerBankGateway",
    "ProductSpec",
    "ProductType",
    "RemoteOpeningNotOffered",
    "RemoteOpeningSpec",
    "ResponseCode",
    "bank_codes",
    "bank_database",
    "bank_for_pan",
    "bank_spec",
    "banks",
    "load_banks",
]
