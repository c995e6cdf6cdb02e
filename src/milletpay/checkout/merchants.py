"""Merchants: onboarding through the API, their API keys, their balance in the ledger.

A merchant is onboarded with its legal name, the name and city a QR code and the wallet
show, its merchant category code (which sets the merchant discount rate, `fees.py`) and
the bank account its takings are paid out to. A QR code's merchant name and city (EMV
tags 59 and 60) are printable ASCII: a name or city in another script (兰亭茶馆, Café)
comes with its Latin form for them (`name_latin`, `city_latin`) and its language
(`name_language`), and the code carries it in its language template (tag 64). Nothing
is ever cut to fit: a name or city too long for the code is refused at onboarding.
Onboarding opens the merchant's ledger account (what Millet Pay owes it) and gives it
one secret key and one publishable key, in one transaction.

A secret key (`sk_live_…`) signs server-to-server calls. It is shown once, when made:
only its HMAC under a key-ring-derived key is stored, and a request is matched by that
HMAC. A merchant may hold several (to roll them) and revoke any. A publishable key
(`pk_live_…`) is public: the merchant's app uses it to show a payment intent to the
payer, nothing more. The settlement account number is sealed with the key ring and
shown masked. Nothing here logs a key or an account number.
"""

from __future__ import annotations

import enum
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa

from milletpay.banks.data import bank_codes
from milletpay.checkout.errors import (
    ApiKeyLimitReached,
    ApiKeyNotFound,
    MerchantInvalid,
    MerchantNotFound,
)
from milletpay.checkout.fees import DIGITAL_GOODS_MCCS, is_mcc, mdr_bps
from milletpay.checkout.tables import merchant_api_keys, merchants
from milletpay.core.clock import Clock
from milletpay.core.ids import IdGenerator, id_from_bytes, id_to_bytes
from milletpay.core.keyring import KeyRing
from milletpay.emv.qr import is_common_charset
from milletpay.ledger import Account, CreateAccountResult, Ledger
from milletpay.ledger.committer import Committer, DirectCommitter
from milletpay.ledger.engine import LedgerTransaction
from milletpay.store.sql import Sql
from milletpay.wallet.accounts import CHART, LEDGER_CNY, AccountCode, merchant_account_id

SECRET_KEY_PREFIX: Final = "sk_live_"
PUBLISHABLE_KEY_PREFIX: Final = "pk_live_"
KEY_RANDOM_BYTES: Final = 24  # 32 base64url characters
KEY_CHARS_MAX: Final = 64
#: Live (unrevoked) keys one merchant may hold, of both kinds together.
API_KEYS_PER_MERCHANT_MAX: Final = 20
LEGAL_NAME_CHARS_MAX: Final = 100
DISPLAY_NAME_CHARS_MAX: Final = 25  # EMV QR tags 59 and 64.01
CITY_CHARS_MAX: Final = 15  # EMV QR tags 60 and 64.02
LANGUAGE_CHARS: Final = 2  # ISO 639-1, EMV QR tag 64.00
ACCOUNT_DIGITS_MIN: Final = 10
ACCOUNT_DIGITS_MAX: Final = 30
_KEY_HASH_PURPOSE: Final = b"milletpay/checkout/api-key-hash/v1"
_ACCOUNT_AAD: Final = b"milletpay/checkout/settlement-account/v1|"
_ACCOUNT_NUMBER: Final = re.compile(rf"\A[0-9]{{{ACCOUNT_DIGITS_MIN},{ACCOUNT_DIGITS_MAX}}}\Z")
_KEY_TEXT: Final = re.compile(r"\A[A-Za-z0-9_\-]{1,64}\Z")
_LANGUAGE: Final = re.compile(rf"\A[A-Za-z]{{{LANGUAGE_CHARS}}}\Z")
# Every request of a merchant and every payment reads a merchant: plain SQL (`Sql`).
_MERCHANT_COLUMNS: Final = ", ".join(f"m.{column.name}" for column in merchants.c)
_MERCHANT = Sql(f"SELECT {_MERCHANT_COLUMNS} FROM merchants m WHERE m.id = :id")
_KEY_MERCHANT: Final = (
    f"SELECT {_MERCHANT_COLUMNS}, k.kind AS key_kind FROM merchants m "
    "JOIN merchant_api_keys k ON k.merchant_id = m.id WHERE k.revoked_at IS NULL AND "
)
_BY_SECRET_KEY = Sql(_KEY_MERCHANT + "k.key_hash = :key")
_BY_PUBLISHABLE_KEY = Sql(_KEY_MERCHANT + "k.publishable_key = :key")


class MerchantStatus(enum.StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"


class ApiKeyKind(enum.StrEnum):
    SECRET = "secret"
    PUBLISHABLE = "publishable"


@dataclass(frozen=True, slots=True)
class MerchantApplication:
    """What onboarding asks for. `name_latin` is given exactly when `display_name` is
    not printable ASCII, `city_latin` exactly when `city` is not, `name_language` (ISO
    639-1) when either is given. Its repr hides the account number."""

    legal_name: str
    display_name: str
    city: str
    mcc: str
    settlement_bank_code: str
    settlement_account_number: str
    name_latin: str | None = None
    city_latin: str | None = None
    name_language: str | None = None

    def __repr__(self) -> str:
        return f"MerchantApplication({self.legal_name!r}, mcc={self.mcc})"


@dataclass(frozen=True, slots=True)
class Merchant:
    id: int
    legal_name: str
    display_name: str
    city: str
    mcc: str
    settlement_bank_code: str
    settlement_account_masked: str
    status: MerchantStatus
    created_at_ns: int
    name_latin: str | None = None  # None: display_name is printable ASCII already
    city_latin: str | None = None  # None: city is printable ASCII already
    name_language: str | None = None  # ISO 639-1, lower case; None when both are ASCII

    @property
    def qr_name(self) -> str:
        """The merchant name of a QR code (tag 59): printable ASCII."""
        return self.display_name if self.name_latin is None else self.name_latin

    @property
    def qr_city(self) -> str:
        """The merchant city of a QR code (tag 60): printable ASCII."""
        return self.city if self.city_latin is None else self.city_latin

    @property
    def account_id(self) -> int:
        """The merchant's ledger account: what Millet Pay owes it."""
        return merchant_account_id(self.id)

    @property
    def digital_goods(self) -> bool:
        return self.mcc in DIGITAL_GOODS_MCCS

    @property
    def mdr_bps(self) -> int:
        return mdr_bps(self.mcc)


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key as lists show it: a secret key only by its hint."""

    id: int
    merchant_id: int
    kind: ApiKeyKind
    hint: str
    publishable_key: str | None
    created_at_ns: int
    revoked_at_ns: int | None

    @property
    def live(self) -> bool:
        return self.revoked_at_ns is None


@dataclass(frozen=True, slots=True, repr=False)
class NewKey:
    """A key just made, with its text: a secret key's only showing. Its repr hides it."""

    key: ApiKey
    text: str

    def __repr__(self) -> str:
        return f"NewKey({self.key.kind}, {self.key.hint})"


@dataclass(frozen=True, slots=True)
class Onboarded:
    merchant: Merchant
    secret_key: NewKey
    publishable_key: NewKey


class MerchantService:
    """Onboarding, keys and look-ups; thread-safe."""

    def __init__(
        self,
        ledger: Ledger,
        keyring: KeyRing,
        clock: Clock,
        *,
        committer: Committer | None = None,
    ) -> None:
        self._ledger = ledger
        self._engine = ledger.engine
        self._committer: Committer = committer or DirectCommitter(ledger)
        self._keyring = keyring
        self._hash_key = keyring.derive(_KEY_HASH_PURPOSE)
        self._clock = clock
        self._ids = IdGenerator(clock)

    # -- onboarding -------------------------------------------------------------------

    def onboard(self, application: MerchantApplication) -> Onboarded:
        """A new merchant, active, with its ledger account and a key of each kind.
        `MerchantInvalid` naming the field; nothing is stored then."""
        _check(application)
        merchant_id = self._ids.next_id()
        key = id_to_bytes(merchant_id)
        now_ns = self._clock.now_ns()
        number = application.settlement_account_number
        language = application.name_language
        row = {
            "id": key,
            "legal_name": application.legal_name,
            "display_name": application.display_name,
            "city": application.city,
            "name_latin": application.name_latin,
            "city_latin": application.city_latin,
            "name_language": None if language is None else language.lower(),
            "mcc": application.mcc,
            "settlement_bank_code": application.settlement_bank_code,
            "settlement_account_masked": _mask_account(number),
            "settlement_account_sealed": self._keyring.seal(
                number.encode("ascii"), _ACCOUNT_AAD + key
            ),
            "status": MerchantStatus.ACTIVE.value,
            "created_at": now_ns,
            "updated_at": now_ns,
        }

        def unit(tx: LedgerTransaction) -> tuple[NewKey, NewKey]:
            kind = CHART[AccountCode.MERCHANT]
            account = Account(
                merchant_account_id(merchant_id),
                LEDGER_CNY,
                kind.code,
                kind.flags,
                user_data_128=merchant_id,
            )
            (result,) = tx.create_accounts([account])
            assert result is CreateAccountResult.OK, result
            tx.connection.execute(sa.insert(merchants).values(row))
            secret = self._insert_key(tx.connection, merchant_id, ApiKeyKind.SECRET, now_ns)
            public = self._insert_key(tx.connection, merchant_id, ApiKeyKind.PUBLISHABLE, now_ns)
            return secret, public

        secret, public = self._committer.run(unit)
        return Onboarded(_merchant(row), secret, public)

    # -- keys -------------------------------------------------------------------------

    def create_key(self, merchant_id: int, kind: ApiKeyKind) -> NewKey:
        """Another key; `ApiKeyLimitReached` at `API_KEYS_PER_MERCHANT_MAX` live ones."""
        with self._engine.begin() as conn:
            self._require(conn, merchant_id)
            live = conn.execute(
                sa.select(sa.func.count())
                .select_from(merchant_api_keys)
                .where(
                    merchant_api_keys.c.merchant_id == id_to_bytes(merchant_id),
                    merchant_api_keys.c.revoked_at.is_(None),
                )
            ).scalar_one()
            if live >= API_KEYS_PER_MERCHANT_MAX:
                raise ApiKeyLimitReached(
                    f"a merchant holds at most {API_KEYS_PER_MERCHANT_MAX} live keys; "
                    "revoke one first"
                )
            return self._insert_key(conn, merchant_id, kind, self._clock.now_ns())

    def keys(self, merchant_id: int) -> list[ApiKey]:
        """The merchant's keys, live and revoked, oldest first."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                sa.select(merchant_api_keys)
                .where(merchant_api_keys.c.merchant_id == id_to_bytes(merchant_id))
                .order_by(merchant_api_keys.c.created_at, merchant_api_keys.c.id)
            ).all()
        return [_api_key(row) for row in rows]

    def revoke_key(self, merchant_id: int, key_id: int) -> ApiKey:
        """Revoke one of the merchant's keys (again: the same answer); it signs nothing
        from now on. `ApiKeyNotFound` for a key that is not the merchant's."""
        c = merchant_api_keys.c
        mine = (c.id == id_to_bytes(key_id), c.merchant_id == id_to_bytes(merchant_id))
        with self._engine.begin() as conn:
            conn.execute(
                sa.update(merchant_api_keys)
                .where(*mine, c.revoked_at.is_(None))
                .values(revoked_at=self._clock.now_ns())
            )
            row = conn.execute(sa.select(merchant_api_keys).where(*mine)).first()
        if row is None:
            raise ApiKeyNotFound(f"the merchant has no key {key_id:032x}")
        return _api_key(row)

    def authenticate(self, text: str) -> tuple[Merchant, ApiKeyKind] | None:
        """The merchant a live key belongs to, and the key's kind; None for anything
        else (unknown, revoked, malformed)."""
        with self._engine.connect() as conn:
            return self.authenticate_in(conn, text)

    def authenticate_in(self, conn: sa.Connection, text: str) -> tuple[Merchant, ApiKeyKind] | None:
        """`authenticate` read on the caller's connection, in its transaction."""
        if not _KEY_TEXT.match(text):
            return None
        key: bytes | str
        if text.startswith(SECRET_KEY_PREFIX):
            by_key, key = _BY_SECRET_KEY, self._hash(text)
        elif text.startswith(PUBLISHABLE_KEY_PREFIX):
            by_key, key = _BY_PUBLISHABLE_KEY, text
        else:
            return None
        row = by_key.run(conn, key=key).first()
        if row is None:
            return None
        return _merchant(row._asdict()), ApiKeyKind(row.key_kind)

    # -- reading ----------------------------------------------------------------------

    def merchant(self, merchant_id: int) -> Merchant:
        """`MerchantNotFound` for an unknown merchant."""
        with self._engine.connect() as conn:
            return self.merchant_in(conn, merchant_id)

    def merchant_in(self, conn: sa.Connection, merchant_id: int) -> Merchant:
        """`merchant` read on the caller's connection, in its transaction."""
        return _merchant(self._require(conn, merchant_id)._asdict())

    def balance_fen(self, merchant_id: int) -> tuple[int, int]:
        """(posted, pending) of what Millet Pay owes the merchant."""
        (account,) = self._ledger.lookup_accounts([merchant_account_id(merchant_id)])
        posted = account.credits_posted - account.debits_posted
        return posted, account.credits_pending - account.debits_pending

    def settlement_account_number(self, merchant_id: int) -> str:
        """The payout account in clear: for the payout run, never for an answer."""
        with self._engine.connect() as conn:
            row = self._require(conn, merchant_id)
        opened = self._keyring.open(row.settlement_account_sealed, _ACCOUNT_AAD + row.id)
        return opened.decode("ascii")

    # -- storage ----------------------------------------------------------------------

    def _require(self, conn: sa.Connection, merchant_id: int) -> Any:
        row = _MERCHANT.run(conn, id=id_to_bytes(merchant_id)).first()
        if row is None:
            raise MerchantNotFound(f"no merchant {merchant_id:032x}")
        return row

    def _insert_key(
        self, conn: sa.Connection, merchant_id: int, kind: ApiKeyKind, now_ns: int
    ) -> NewKey:
        prefix = SECRET_KEY_PREFIX if kind is ApiKeyKind.SECRET else PUBLISHABLE_KEY_PREFIX
        text = prefix + secrets.token_urlsafe(KEY_RANDOM_BYTES)
        assert len(text) <= KEY_CHARS_MAX and _KEY_TEXT.match(text)
        secret = kind is ApiKeyKind.SECRET
        row = {
            "id": id_to_bytes(self._ids.next_id()),
            "merchant_id": id_to_bytes(merchant_id),
            "kind": kind.value,
            "key_hash": self._hash(text) if secret else None,
            "publishable_key": None if secret else text,
            "hint": f"{prefix}...{text[-4:]}",
            "created_at": now_ns,
            "revoked_at": None,
        }
        conn.execute(sa.insert(merchant_api_keys).values(row))
        return NewKey(_api_key(row), text)

    def _hash(self, text: str) -> bytes:
        return hmac.digest(self._hash_key, text.encode("ascii"), "sha256")


def _check(application: MerchantApplication) -> None:
    """Every field of the application, or `MerchantInvalid` naming the first wrong one."""
    texts = (
        ("legal_name", application.legal_name, LEGAL_NAME_CHARS_MAX),
        ("display_name", application.display_name, DISPLAY_NAME_CHARS_MAX),
        ("city", application.city, CITY_CHARS_MAX),
    )
    for field, value, chars_max in texts:
        _check_text(field, value, chars_max)
    _check_latin_forms(application)
    if not is_mcc(application.mcc):
        raise MerchantInvalid("mcc is a merchant category code of 4 digits", field="mcc")
    if application.settlement_bank_code not in bank_codes():
        raise MerchantInvalid(
            f"settlement_bank_code {application.settlement_bank_code!r} is no partner bank",
            field="settlement_bank_code",
        )
    if not _ACCOUNT_NUMBER.match(application.settlement_account_number):
        raise MerchantInvalid(
            f"settlement_account_number is {ACCOUNT_DIGITS_MIN} to {ACCOUNT_DIGITS_MAX} digits",
            field="settlement_account_number",
        )


def _check_text(field: str, value: object, chars_max: int) -> None:
    if not (isinstance(value, str) and len(value.strip()) >= 1 and len(value) <= chars_max):
        raise MerchantInvalid(f"{field} is 1 to {chars_max} characters", field=field)
    if not value.isprintable():
        raise MerchantInvalid(f"{field} has a character that does not print", field=field)


# (the shown field, the field of its Latin form, their length limit, the EMV tag the
# Latin form goes in)
_LATIN_FORMS: Final = (
    ("display_name", "name_latin", DISPLAY_NAME_CHARS_MAX, "59 (merchant name)"),
    ("city", "city_latin", CITY_CHARS_MAX, "60 (merchant city)"),
)


def _check_latin_forms(application: MerchantApplication) -> None:
    """`name_latin` / `city_latin` exactly when the shown name / city is not printable
    ASCII, themselves printable ASCII of the same bounds; `name_language` exactly when
    either is given."""
    needed = False
    for shown_field, latin_field, chars_max, tag in _LATIN_FORMS:
        shown: str = getattr(application, shown_field)
        latin: str | None = getattr(application, latin_field)
        if is_common_charset(shown):
            if latin is not None:
                raise MerchantInvalid(
                    f"{latin_field} is only for a {shown_field} outside printable ASCII; "
                    f"{shown_field} {shown!r} goes in a QR code as it is",
                    field=latin_field,
                )
            continue
        needed = True
        if latin is None:
            raise MerchantInvalid(
                f"{shown_field} {shown!r} has characters a QR code's tag {tag} cannot carry "
                f"(printable ASCII only): give {latin_field}, its Latin form, "
                f"1 to {chars_max} characters",
                field=latin_field,
            )
        _check_text(latin_field, latin, chars_max)
        if not is_common_charset(latin):
            raise MerchantInvalid(f"{latin_field} is printable ASCII only", field=latin_field)
    language = application.name_language
    if needed and language is None:
        raise MerchantInvalid(
            "name_language (ISO 639-1, two letters, e.g. zh) is needed with a name or city "
            "outside printable ASCII: a QR code's language template (tag 64) names it",
            field="name_language",
        )
    if not needed and language is not None:
        raise MerchantInvalid(
            "name_language is only for a display_name or city outside printable ASCII",
            field="name_language",
        )
    if language is not None and not (isinstance(language, str) and _LANGUAGE.match(language)):
        raise MerchantInvalid(
            "name_language is an ISO 639-1 code of two letters", field="name_language"
        )


def _mask_account(number: str) -> str:
    return "*" * (len(number) - 4) + number[-4:]


def _merchant(row: Any) -> Merchant:
    return Merchant(
        id=id_from_bytes(row["id"]),
        legal_name=row["legal_name"],
        display_name=row["display_name"],
        city=row["city"],
        mcc=row["mcc"],
        settlement_bank_code=row["settlement_bank_code"],
        settlement_account_masked=row["settlement_account_masked"],
        status=MerchantStatus(row["status"]),
        created_at_ns=row["created_at"],
        name_latin=row["name_latin"],
        city_latin=row["city_latin"],
        name_language=row["name_language"],
    )


def _api_key(row: Any) -> ApiKey:
    values = row if isinstance(row, dict) else row._asdict()
    return ApiKey(
        id=id_from_bytes(values["id"]),
        merchant_id=id_from_bytes(values["merchant_id"]),
        kind=ApiKeyKind(values["kind"]),
        hint=values["hint"],
        publishable_key=values["publishable_key"],
        created_at_ns=values["created_at"],
        revoked_at_ns=values["revoked_at"],
    )
