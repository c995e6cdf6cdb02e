"""`Bank`: one issuing bank with its own books — customers, accounts, cards, its ledger.

A bank is built from its `BankSpec` (the data file) and nothing else distinguishes one
bank from another. Its ledger and tables live in its own database (`storage.py`). Every
write runs in the bank's ledger write transaction, so the bank's rows and its transfers
commit together and the bank's decisions are serialized.

Card numbers, account numbers, names and ID numbers are sealed with the key ring (AAD
binding each to its row) and found through keyed fingerprints; only masks leave the
bank, apart from the PAN and CVN2 handed once to the customer at issuing. Nothing here
logs a PAN. Authorization lives in `authorization.py`, linked-account movements in
`linked.py`; both work on this class's books.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from typing import Any

import sqlalchemy as sa
from stdnum.cn import ric
from stdnum.exceptions import ValidationError

from milletpay.banks import authorization, chart, idv, linked
from milletpay.banks.authorization import AuthorizationAnswer, AuthorizationRequest, HoldAnswer
from milletpay.banks.cardnumbers import (
    cvn2,
    is_pin_format,
    make_pan,
    mask_pan,
    pin_verification_value,
)
from milletpay.banks.chart import LEDGER_CNY, BankAccountCode, BankTransferCode
from milletpay.banks.data import BankSpec, ProductSpec, ProductType
from milletpay.banks.errors import (
    BankAccountNotFound,
    BankInputError,
    CardNotFound,
    RemoteOpeningNotOffered,
)
from milletpay.banks.idv import IdvDecision
from milletpay.banks.keys import BankKeys
from milletpay.banks.model import (
    REAL_NAME_CHARS_MAX,
    AccountStatus,
    Balance,
    BankAccount,
    CardStatus,
    IssuedCard,
    OpenedAccount,
    account_from_row,
    check_amount,
    check_reference,
    cst_now,
)
from milletpay.banks.storage import open_bank_engine
from milletpay.banks.tables import bank_accounts, bank_counters, cards, customers
from milletpay.core.clock import Clock, SystemClock
from milletpay.core.ids import IdGenerator, id_from_bytes, id_to_bytes
from milletpay.core.keyring import KeyRing
from milletpay.identity.errors import PhoneInvalid
from milletpay.identity.phone import normalize_phone
from milletpay.ledger import (
    Account,
    CreateAccountResult,
    CreateTransferResult,
    Ledger,
    Transfer,
    VerifyReport,
)
from milletpay.ledger.engine import LedgerTransaction
from milletpay.wallet.bank import BankAnswer, LinkAnswer


class Bank:
    """One bank's books and operations; safe to share between threads."""

    def __init__(
        self,
        spec: BankSpec,
        engine: sa.Engine,
        keyring: KeyRing,
        keys: BankKeys,
        clock: Clock | None = None,
    ) -> None:
        self.spec = spec
        self.code = spec.code
        self._clock: Clock = clock or SystemClock()
        self.ledger = Ledger(engine, self._clock)
        self._keyring = keyring
        self._keys = keys
        self._ids = IdGenerator(self._clock)
        self._fingerprint_key = keyring.derive(b"millet.banks.fingerprint:" + spec.code.encode())
        self._online = threading.Event()
        self._online.set()
        self._create_own_accounts()

    @classmethod
    def open(
        cls,
        spec: BankSpec,
        base_url: str | None,
        keyring: KeyRing,
        keys: BankKeys,
        clock: Clock | None = None,
    ) -> Bank:
        """The bank's books in its own database derived from the platform's `base_url`."""
        return cls(spec, open_bank_engine(base_url, spec.code), keyring, keys, clock)

    def __repr__(self) -> str:
        return f"Bank({self.code})"

    @property
    def engine(self) -> sa.Engine:
        return self.ledger.engine

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def keys(self) -> BankKeys:
        return self._keys

    def close(self) -> None:
        self.ledger.close()

    # -- the simulation's switch ---------------------------------------------------

    @property
    def online(self) -> bool:
        return self._online.is_set()

    def set_online(self, online: bool) -> None:
        """Offline, the bank answers nothing but 91 (issuer inoperative) / unavailable."""
        if online:
            self._online.set()
        else:
            self._online.clear()

    # -- secrets -------------------------------------------------------------------

    def fingerprint(self, secret: str) -> bytes:
        """The keyed fingerprint a PAN or account number is looked up by."""
        return hmac.new(self._fingerprint_key, secret.encode(), hashlib.sha256).digest()

    def _aad(self, kind: bytes, row_id: int) -> bytes:
        return b"bank:" + self.code.encode() + b":" + kind + b":" + id_to_bytes(row_id)

    def seal(self, kind: bytes, row_id: int, secret: str) -> bytes:
        return self._keyring.seal(secret.encode(), self._aad(kind, row_id))

    def unseal(self, kind: bytes, row_id: int, sealed: bytes) -> str:
        return self._keyring.open(sealed, self._aad(kind, row_id)).decode()

    def card_cvn2(self, pan: str, expiry_yymm: str) -> str:
        return cvn2(self._keys.cvk(self.code), pan, expiry_yymm)

    def pin_value(self, card_id: int, pin: str) -> bytes:
        return pin_verification_value(self._keys.pvk(self.code), card_id, pin)

    # -- books ---------------------------------------------------------------------

    def own_account_id(self, code: BankAccountCode) -> int:
        return chart.own_account_id(self.code, code)

    def _create_own_accounts(self) -> None:
        accounts = [
            Account(self.own_account_id(code), LEDGER_CNY, code, chart.ACCOUNT_FLAGS[code])
            for code in chart.OWN_ACCOUNTS
        ]
        results = self.ledger.create_accounts(accounts)
        assert all(r in (CreateAccountResult.OK, CreateAccountResult.EXISTS) for r in results)

    def verify(self) -> VerifyReport:
        return self.ledger.verify()

    def _next_serial(self, conn: sa.Connection) -> int:
        conn.execute(sa.update(bank_counters).values(last_serial=bank_counters.c.last_serial + 1))
        serial = conn.execute(sa.select(bank_counters.c.last_serial)).scalar_one()
        return int(serial)

    # -- customers and accounts ----------------------------------------------------

    def open_customer(
        self, real_name: str, national_id: str | None = None, *, phone: str | None = None
    ) -> int:
        """A new customer; the name (and the resident ID number and the mobile number on
        file, if given) sealed. `BankInputError` (`bank_phone_invalid`) for a number that
        is not a mainland mobile number."""
        with self.ledger.transaction() as tx:
            return self._insert_customer(tx.connection, real_name, national_id, phone)

    def _insert_customer(
        self,
        conn: sa.Connection,
        real_name: str,
        national_id: str | None,
        phone: str | None = None,
    ) -> int:
        if not (isinstance(real_name, str) and 1 <= len(real_name) <= REAL_NAME_CHARS_MAX):
            raise BankInputError(f"a real name is 1 to {REAL_NAME_CHARS_MAX} characters")
        normalized = None if phone is None else _normalize_phone(phone)
        customer_id = self._ids.next_id()
        row: dict[str, Any] = {
            "id": id_to_bytes(customer_id),
            "real_name_sealed": self.seal(b"name", customer_id, real_name),
            "created_at": self._clock.now_ns(),
        }
        if national_id is not None:
            row["national_id_sealed"] = self.seal(b"national-id", customer_id, national_id)
            row["national_id_fingerprint"] = self.fingerprint("national-id:" + national_id)
        if normalized is not None:
            row["phone_sealed"] = self.seal(b"phone", customer_id, normalized)
        conn.execute(sa.insert(customers).values(row))
        return customer_id

    def customer_name(self, customer_id: int) -> str:
        with self.engine.connect() as conn:
            sealed = conn.execute(
                sa.select(customers.c.real_name_sealed).where(
                    customers.c.id == id_to_bytes(customer_id)
                )
            ).scalar_one()
        return self.unseal(b"name", customer_id, sealed)

    def open_account(
        self, customer_id: int, product_code: str, *, credit_limit_fen: int | None = None
    ) -> OpenedAccount:
        """A Class I account of `product_code` for the customer; a credit account gets
        the product's default limit unless `credit_limit_fen` is given."""
        product = self._product(product_code)
        with self.ledger.transaction() as tx:
            return self._insert_account(tx, customer_id, product, 1, credit_limit_fen, None)

    def open_remote_account(self, real_name: str, national_id: str) -> OpenedAccount:
        """Open, in-app, the account class of the bank's `remote_opening` data (Class II):
        real name and resident ID number. One such account per ID number: asking again
        answers the same account (its number included)."""
        remote = self.spec.remote_opening
        if remote is None:
            raise RemoteOpeningNotOffered(f"{self.code} does not open accounts remotely")
        try:
            ric.validate(national_id)
        except ValidationError:
            raise BankInputError(
                "the resident ID number is not valid", code="bank_national_id_invalid"
            ) from None
        product = self._product(remote.product)
        remote_fingerprint = self.fingerprint("remote:national-id:" + national_id)
        with self.ledger.transaction() as tx:
            existing = tx.connection.execute(
                sa.select(bank_accounts).where(
                    bank_accounts.c.remote_fingerprint == remote_fingerprint
                )
            ).first()
            if existing is not None:
                account_id = id_from_bytes(existing.id)
                number = self.unseal(b"account-number", account_id, existing.number_sealed)
                return OpenedAccount(account_from_row(existing._asdict()), number)
            customer_id = self._insert_customer(tx.connection, real_name, national_id)
            return self._insert_account(
                tx, customer_id, product, remote.account_class, None, remote_fingerprint
            )

    def _product(self, code: str) -> ProductSpec:
        try:
            return self.spec.product(code)
        except KeyError:
            raise BankInputError(
                f"{self.code} has no product {code!r}", code="bank_product_unknown"
            ) from None

    def _insert_account(
        self,
        tx: LedgerTransaction,
        customer_id: int,
        product: ProductSpec,
        account_class: int,
        credit_limit_fen: int | None,
        remote_fingerprint: bytes | None,
    ) -> OpenedAccount:
        credit = product.type is ProductType.CREDIT
        limit_fen = (credit_limit_fen or product.credit_limit_fen) if credit else 0
        if credit_limit_fen is not None and not credit:
            raise BankInputError("a credit limit is for credit products only")
        account_id = self._ids.next_id()
        number = make_pan(product.iin, self._next_serial(tx.connection))
        row = {
            "id": id_to_bytes(account_id),
            "customer_id": id_to_bytes(customer_id),
            "number_sealed": self.seal(b"account-number", account_id, number),
            "number_fingerprint": self.fingerprint(number),
            "number_masked": mask_pan(number),
            "product": product.code,
            "product_type": product.type.value,
            "account_class": account_class,
            "credit_limit_fen": limit_fen,
            "status": AccountStatus.ACTIVE.value,
            "remote_fingerprint": remote_fingerprint,
            "created_at": self._clock.now_ns(),
        }
        tx.connection.execute(sa.insert(bank_accounts).values(row))
        code = BankAccountCode.CREDIT if credit else BankAccountCode.DEPOSIT
        result = tx.create_accounts(
            [Account(account_id, LEDGER_CNY, code, chart.ACCOUNT_FLAGS[code])]
        )
        assert result == [CreateAccountResult.OK], result
        if limit_fen:
            line = Transfer(
                chart.transfer_id(self.code, "credit-line", str(account_id), 0),
                self.own_account_id(BankAccountCode.CREDIT_LINES),
                account_id,
                limit_fen,
                LEDGER_CNY,
                BankTransferCode.CREDIT_LINE,
            )
            assert tx.create_transfers([line]) == [CreateTransferResult.OK]
        return OpenedAccount(account_from_row(row), number)

    def account(self, account_id: int) -> BankAccount:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(bank_accounts).where(bank_accounts.c.id == id_to_bytes(account_id))
            ).first()
        if row is None:
            raise BankAccountNotFound(f"{self.code} has no such account")
        return account_from_row(row._asdict())

    def set_account_status(self, account_id: int, status: AccountStatus) -> None:
        with self.ledger.transaction() as tx:
            done = tx.connection.execute(
                sa.update(bank_accounts)
                .where(bank_accounts.c.id == id_to_bytes(account_id))
                .values(status=AccountStatus(status).value)
            )
            if done.rowcount != 1:
                raise BankAccountNotFound(f"{self.code} has no such account")

    def balance(self, account_id: int) -> Balance:
        account = self.account(account_id)
        (ledger_account,) = self.ledger.lookup_accounts([account_id])
        posted = ledger_account.credits_posted - ledger_account.debits_posted
        held = ledger_account.debits_pending
        owed = account.credit_limit_fen - posted if account.credit_limit_fen else 0
        return Balance(posted, held, posted - held, owed)

    def deposit(self, account_id: int, amount_fen: int, reference: str) -> bool:
        """Cash paid in at the counter (deposit, or a credit card's repayment); idempotent
        by `reference`. False if the account is not open for it."""
        check_amount(amount_fen)
        check_reference(reference)
        account = self.account(account_id)
        if account.status is AccountStatus.CLOSED:
            return False
        code = (
            BankTransferCode.REPAYMENT
            if account.product_type is ProductType.CREDIT
            else BankTransferCode.CASH_DEPOSIT
        )
        transfer = Transfer(
            chart.transfer_id(self.code, "deposit", reference, 0),
            self.own_account_id(BankAccountCode.CASH),
            account_id,
            amount_fen,
            LEDGER_CNY,
            code,
        )
        (result,) = self.ledger.create_transfers([transfer])
        return result in (CreateTransferResult.OK, CreateTransferResult.EXISTS)

    # -- cards ---------------------------------------------------------------------

    def issue_card(self, account_id: int, *, pin: str) -> IssuedCard:
        """A card on the account, from its product's IIN, valid the product's years."""
        if not is_pin_format(pin):
            raise BankInputError("a card PIN is 6 digits", code="bank_pin_invalid")
        account = self.account(account_id)
        product = self._product(account.product)
        now = cst_now(self._clock)
        expiry_yymm = f"{(now.year + product.expiry_years) % 100:02d}{now.month:02d}"
        card_id = self._ids.next_id()
        with self.ledger.transaction() as tx:
            pan = make_pan(product.iin, self._next_serial(tx.connection))
            row = {
                "id": id_to_bytes(card_id),
                "account_id": id_to_bytes(account_id),
                "pan_sealed": self.seal(b"pan", card_id, pan),
                "pan_fingerprint": self.fingerprint(pan),
                "pan_masked": mask_pan(pan),
                "expiry_yymm": expiry_yymm,
                "status": CardStatus.ACTIVE.value,
                "pin_verification_value": self.pin_value(card_id, pin),
                "pin_failed_tries": 0,
                "created_at": self._clock.now_ns(),
            }
            tx.connection.execute(sa.insert(cards).values(row))
        cvn2_digits = self.card_cvn2(pan, expiry_yymm)
        return IssuedCard(card_id, account_id, mask_pan(pan), expiry_yymm, pan, cvn2_digits)

    def set_card_status(self, card_id: int, status: CardStatus) -> None:
        with self.ledger.transaction() as tx:
            done = tx.connection.execute(
                sa.update(cards)
                .where(cards.c.id == id_to_bytes(card_id))
                .values(status=CardStatus(status).value)
            )
            if done.rowcount != 1:
                raise CardNotFound(f"{self.code} has no such card")

    def card_status(self, card_id: int) -> CardStatus:
        with self.engine.connect() as conn:
            status = conn.execute(
                sa.select(cards.c.status).where(cards.c.id == id_to_bytes(card_id))
            ).scalar_one_or_none()
        if status is None:
            raise CardNotFound(f"{self.code} has no such card")
        return CardStatus(status)

    # -- services (authorization.py, idv.py, linked.py) ------------------------------

    def idv(self, pan: str, expiry_yymm: str, cvn2: str, wallet_phone: str) -> IdvDecision:
        """The issuer's ID&V decision on a token request for the card: green, yellow
        (step-up to the phone on file) or red, with the reason (see `idv.py`)."""
        return idv.decide(self, pan, expiry_yymm, cvn2, wallet_phone)

    def authorize(
        self, request: AuthorizationRequest, *, post: bool = False
    ) -> AuthorizationAnswer:
        """Approve or decline a card payment; an approval holds the amount, or, with
        `post` (a single-message purchase), takes it in the same transaction."""
        return authorization.authorize(self, request, post=post)

    def complete(self, reference: str, amount_fen: int) -> HoldAnswer:
        """Post `amount_fen` (at most the authorized amount) of the authorization's hold."""
        return authorization.complete(self, reference, amount_fen)

    def reverse(self, reference: str) -> HoldAnswer:
        """Void the authorization's hold (or take a refund back)."""
        return authorization.reverse(self, reference)

    def refund(self, request: AuthorizationRequest) -> AuthorizationAnswer:
        """Credit a merchant's refund to the card's account, once per reference."""
        return authorization.refund(self, request)

    def link(self, account_number: str, holder_name: str) -> LinkAnswer:
        return linked.link(self, account_number, holder_name)

    def debit(self, agreement: str, amount_fen: int, reference: str) -> BankAnswer:
        return linked.debit(self, agreement, amount_fen, reference)

    def credit(self, agreement: str, amount_fen: int, reference: str) -> BankAnswer:
        return linked.credit(self, agreement, amount_fen, reference)


def _normalize_phone(phone: str) -> str:
    try:
        return normalize_phone(phone)
    except PhoneInvalid as exc:
        raise BankInputError(exc.message, code="bank_phone_invalid") from None
