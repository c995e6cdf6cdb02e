"""`CoinService`: Millet coins, a virtual currency for digital goods on its own ledger.

A user buys coins with their wallet balance or a linked bank account (1 coin = 1 CNY), and
spends them only at the digital-goods merchants of `MERCHANTS`, or pays a checkout
merchant of a digital-goods MCC with them (`pay_merchant_in`, in the payment intent's
transaction). Coins are never redeemable for cash: no method here moves coins back to CNY
for the user. Coins come back only as coins: `refund_service_shutdown` returns to their
purses the coins users spent at a merchant that shut down on orders it never fulfilled,
and `receive_refund_in` the coins of a checkout payment the merchant refunds.

Every operation follows `WalletService`'s steps: check the input, admit it in one write
transaction holding the user's wallet row (an earlier attempt under the same key, or a new
row judged by `risk`), move money with transfer ids derived from (user, key), record the
outcome. A retry never moves anything twice.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import sqlalchemy as sa

from milletpay.core.clock import Clock
from milletpay.core.ids import IdGenerator, id_from_bytes, id_to_bytes
from milletpay.identity import IdentityService
from milletpay.identity.kyc import KycTier
from milletpay.ledger import (
    BATCH_EVENTS_MAX,
    Account,
    CreateAccountResult,
    CreateTransferResult,
    Ledger,
    Transfer,
    TransferFlags,
)
from milletpay.ledger.engine import LedgerTransaction
from milletpay.risk import (
    Decision,
    decide,
)
from milletpay.store.engine import read_transaction, write_transaction
from milletpay.wallet.accounts import (
    CHART,
    FEN_PER_COIN,
    LEDGER_CNY,
    LEDGER_COINS,
    AccountCode,
    TransferCode,
    coin_purse_account_id,
    platform_account_id,
    settlement_account_id,
    transfer_id,
    wallet_account_id,
)
from milletpay.wallet.bank import BankGateway
from milletpay.wallet.errors import (
    AmountInvalid,
    IdempotencyKeyReused,
    LedgerRefused,
    WalletError,
)
from milletpay.wallet.service import WalletService, check_idempotency_key, find_link
from milletpay.wallet.tables import (
    CoinOperationKind,
    CoinOperationStatus,
    coin_merchant_shutdowns,
    coin_operations,
    wallets,
)
from milletpay.wallet.usage import RISK_KIND_OF_COIN
from milletpay.wallet.usage import usage as count_usage

#: The most coins one purchase or spend may carry (10^11 coins = 10^13 fen, the wallet's cap).
AMOUNT_COINS_MAX = 10**11
#: Spends refunded per ledger batch when a merchant shuts down (2 ≤ BATCH_EVENTS_MAX).
SHUTDOWN_REFUNDS_PER_BATCH = 1_000
#: Purse accounts read per ledger lookup by `coin_liability_check`.
PURSES_PER_LOOKUP = 1_000
assert SHUTDOWN_REFUNDS_PER_BATCH <= BATCH_EVENTS_MAX and PURSES_PER_LOOKUP <= BATCH_EVENTS_MAX


class MerchantCategory(StrEnum):
    """The digital-goods categories coins may buy."""

    APPS = "apps"
    THEMES = "themes"
    GAMES = "games"
    IN_APP_ITEMS = "in_app_items"
    MUSIC = "music"
    VIDEO = "video"
    BOOKS = "books"


@dataclass(frozen=True, slots=True)
class CoinMerchant:
    merchant_id: str
    name: str
    category: str  # a `MerchantCategory` value, or anything else for a merchant coins refuse


#: The merchants known to coins. Only those whose category is a `MerchantCategory` accept
#: coins; the others are listed so that a spend there is refused by name, not as unknown.
# fmt: off
MERCHANTS: dict[str, CoinMerchant] = {m.merchant_id: m for m in (
    CoinMerchant("app_store",     "Millet App Store",  MerchantCategory.APPS),
    CoinMerchant("theme_store",   "Millet Themes",     MerchantCategory.THEMES),
    CoinMerchant("game_center",   "Millet Game Center", MerchantCategory.GAMES),
    CoinMerchant("dragon_quest",  "Dragon Quest Gems", MerchantCategory.IN_APP_ITEMS),
    CoinMerchant("millet_music",  "Millet Music",      MerchantCategory.MUSIC),
    CoinMerchant("millet_video",  "Millet Video",      MerchantCategory.VIDEO),
    CoinMerchant("millet_reader", "Millet Reader",     MerchantCategory.BOOKS),
    CoinMerchant("lotus_mart",    "Lotus Mart",        "groceries"),
)}
# fmt: on
_DIGITAL_GOODS = frozenset(c.value for c in MerchantCategory)


class CoinDeclineCode(StrEnum):
    """Declines that are not a limit (those are `risk.DeclineCode`)."""

    INSUFFICIENT_BALANCE = "insufficient_balance"
    INSUFFICIENT_COINS = "insufficient_coins"
    BANK_DECLINED = "bank_declined"
    MERCHANT_BALANCE_INSUFFICIENT = "merchant_balance_insufficient"  # a checkout refund


# The legs of an operation: each gets its own derived transfer id, from (user, the
# operation's kind, its key, leg); a shutdown refund's from the spend's key under its own kind.
_LEG_CNY, _LEG_COINS, _LEG_POST, _LEG_VOID = 0, 1, 2, 3
_REFUND_TRANSFER_KIND = "coin_shutdown_refund"
#: The checkout's coin operations derive their transfer ids under a kind of their own, so
#: that no id can meet the wallet's (its merchant payments use the same key).
_CHECKOUT_TRANSFER_PREFIX = "coins:"


class CoinMerchantUnknown(WalletError):
    code = "coin_merchant_unknown"


class CoinMerchantNotDigitalGoods(WalletError):
    code = "coin_merchant_not_digital_goods"


class CoinMerchantShutDown(WalletError):
    code = "coin_merchant_shut_down"


class CoinSpendNotFound(WalletError):
    code = "coin_spend_not_found"


class CoinSpendNotFulfillable(WalletError):
    """Only a completed spend can be marked fulfilled (not a declined or refunded one)."""

    code = "coin_spend_not_fulfillable"


@dataclass(frozen=True, slots=True)
class CoinOutcome:
    """The answer to a coin operation; a retry with the same key gets the same answer."""

    operation_id: int
    kind: CoinOperationKind
    amount_coins: int
    status: CoinOperationStatus
    decline_code: str | None = None
    limit: int | None = None  # the limit that declined it, and what remained of it
    remaining: int | None = None
    reason: str | None = None  # the bank's reason, for `bank_declined`
    merchant_id: str | None = None
    fulfilled: bool = False

    @property
    def approved(self) -> bool:
        return self.status is CoinOperationStatus.COMPLETED


@dataclass(frozen=True, slots=True)
class CoinLiability:
    """Coins outstanding by the issuer's account, and the sum of every purse."""

    liability_coins: int
    purses_coins: int

    @property
    def balanced(self) -> bool:
        return self.liability_coins == self.purses_coins


@dataclass(frozen=True, slots=True)
class ShutdownRefund:
    merchant_id: str
    spends_refunded: int
    coins_refunded: int


@dataclass(frozen=True, slots=True)
class _Request:
    kind: CoinOperationKind
    user_id: int
    amount_coins: int
    idempotency_key: str
    merchant_id: str | None = None
    linked_account_id: int | None = None


class CoinService:
    """Buy coins, spend them at digital-goods merchants, refund a shut-down service."""

    def __init__(
        self,
        ledger: Ledger,
        wallet_service: WalletService,
        identity_service: IdentityService,
        engine: sa.Engine,
        clock: Clock,
        bank_gateway: BankGateway,
    ) -> None:
        self._ledger = ledger
        self._wallet = wallet_service
        self._identity = identity_service
        self._engine = engine
        self._clock = clock
        self._bank = bank_gateway
        self._ids = IdGenerator(clock)

    def open_purse(self, user_id: int) -> int:
        """The user's coin purse on the coin ledger (and Millet Pay's coin accounts)."""
        self._wallet.open_wallet(user_id)  # UserNotFound; the wallet row is the user's lock
        kind = CHART[AccountCode.COIN_PURSE]
        purse_id = coin_purse_account_id(user_id)
        purse = Account(purse_id, kind.ledger, kind.code, kind.flags, user_data_128=user_id)
        self._create_accounts([*(_platform_account(c) for c in _PLATFORM_CODES), purse])
        return purse_id

    def coins(self, user_id: int) -> int:
        """The user's coins (0 before their first purchase)."""
        found = self._ledger.lookup_accounts([coin_purse_account_id(user_id)])
        return found[0].balance_credit_minus_debit if found else 0

    # -- operations -----------------------------------------------------------------

    def buy_with_balance(
        self, user_id: int, amount_coins: int, idempotency_key: str
    ) -> CoinOutcome:
        """Pay for coins from the wallet balance: a balance payment toward the tier limit."""
        request = _Request(
            CoinOperationKind.PURCHASE_FROM_BALANCE, user_id, amount_coins, idempotency_key
        )
        self._prepare(request)
        row = self._admit(request)
        if row.status != CoinOperationStatus.PENDING:
            return _outcome(row)
        batch = _purchase(request, wallet_account_id(user_id))
        results = self._send(batch)
        if results[0] == CreateTransferResult.EXCEEDS_CREDITS:
            return self._finish(row, CoinDeclineCode.INSUFFICIENT_BALANCE)
        self._require_chain_applied(batch, results)
        return self._finish(row, None)

    def buy_with_card(
        self, user_id: int, linked_account_id: int, amount_coins: int, idempotency_key: str
    ) -> CoinOutcome:
        """Debit the linked bank account, then the same batch from the bank's settlement."""
        request = _Request(
            CoinOperationKind.PURCHASE_BY_CARD,
            user_id,
            amount_coins,
            idempotency_key,
            linked_account_id=linked_account_id,
        )
        self._prepare(request)
        bank_code, agreement = self._linked_account(user_id, linked_account_id)
        row = self._admit(request)
        if row.status != CoinOperationStatus.PENDING:
            return _outcome(row)
        price_fen = amount_coins * FEN_PER_COIN
        answer = self._bank.debit(bank_code, agreement, price_fen, _reference(request))
        if not answer.approved:
            return self._finish(row, CoinDeclineCode.BANK_DECLINED, reason=answer.reason)
        batch = _purchase(request, settlement_account_id(bank_code))
        self._require_chain_applied(batch, self._send(batch))
        return self._finish(row, None)

    def spend(
        self, user_id: int, merchant_id: str, amount_coins: int, idempotency_key: str
    ) -> CoinOutcome:
        """Pay a digital-goods merchant in coins: the coins go back to the issuer."""
        _check_merchant(merchant_id)
        request = _Request(
            CoinOperationKind.SPEND, user_id, amount_coins, idempotency_key, merchant_id
        )
        self._prepare(request)
        row = self._admit(request)
        if row.status != CoinOperationStatus.PENDING:
            return _outcome(row)
        results = self._send([_spend_transfer(request)])
        if results[0] == CreateTransferResult.EXCEEDS_CREDITS:
            return self._finish(row, CoinDeclineCode.INSUFFICIENT_COINS)
        _require_applied(results)
        return self._finish(row, None)

    def mark_fulfilled(self, user_id: int, operation_id: int) -> CoinOutcome:
        """The merchant delivered what the spend paid for: it is no longer refundable."""
        ops = coin_operations.c
        mine = sa.and_(ops.id == id_to_bytes(operation_id), ops.user_id == id_to_bytes(user_id))
        with self._write() as conn:
            row = conn.execute(
                sa.select(coin_operations).where(mine, ops.kind == CoinOperationKind.SPEND.value)
            ).one_or_none()
            if row is None:
                raise CoinSpendNotFound(f"the user has no coin spend {operation_id:032x}")
            if row.status != CoinOperationStatus.COMPLETED:
                raise CoinSpendNotFulfillable(
                    f"coin spend {operation_id:032x} is {row.status}, not completed"
                )
            conn.execute(sa.update(coin_operations).where(mine).values(fulfilled=True))
            return _outcome(conn.execute(sa.select(coin_operations).where(mine)).one())

    def refund_service_shutdown(self, merchant_id: str) -> ShutdownRefund:
        """The merchant shut down: refuse further spends there, and return to their purses
        the coins of every completed spend it never fulfilled. Calling it again refunds
        only what was not refunded yet (a spend left pending by a crash, once retried)."""
        if merchant_id not in MERCHANTS:
            raise CoinMerchantUnknown(f"no coin merchant {merchant_id!r}")
        shutdowns = coin_merchant_shutdowns.c
        with self._write() as conn:
            known = sa.select(shutdowns.merchant_id).where(shutdowns.merchant_id == merchant_id)
            if conn.execute(known).first() is None:
                now_ns = self._clock.now_ns()
                row = {"merchant_id": merchant_id, "shut_down_at": now_ns}
                conn.execute(sa.insert(coin_merchant_shutdowns).values(row))
        spends, coins = 0, 0
        while rows := self._refundable(merchant_id):
            _require_applied(self._send([_refund_transfer(row) for row in rows]))
            ids = [row.id for row in rows]
            refunded = CoinOperationStatus.REFUNDED.value
            with self._write() as conn:
                conn.execute(
                    sa.update(coin_operations)
                    .where(coin_operations.c.id.in_(ids))
                    .values(status=refunded)
                )
            spends += len(rows)
            coins += sum(row.amount_coins for row in rows)
        return ShutdownRefund(merchant_id, spends, coins)

    def coin_liability_check(self) -> CoinLiability:
        """Coins outstanding (the issuer's account) and the sum of the purses of every user
        who ever bought coins; `balanced` must always hold."""
        issued = self._ledger.lookup_accounts([platform_account_id(AccountCode.COINS_ISSUED)])
        liability = issued[0].balance_debit_minus_credit if issued else 0
        with self._read() as conn:
            users = conn.execute(sa.select(coin_operations.c.user_id).distinct()).scalars().all()
        purse_ids = [coin_purse_account_id(id_from_bytes(u)) for u in users]
        purses = 0
        for start in range(0, len(purse_ids), PURSES_PER_LOOKUP):
            chunk = purse_ids[start : start + PURSES_PER_LOOKUP]
            purses += sum(a.balance_credit_minus_debit for a in self._ledger.lookup_accounts(chunk))
        return CoinLiability(liability, purses)

    # -- checkout: coins paying a payment intent, in the caller's transaction ---------

    def pay_merchant_in(
        self,
        tx: LedgerTransaction,
        user_id: int,
        merchant_ref: str,
        merchant_account: int,
        amount_coins: int,
        idempotency_key: str,
        *,
        hold_timeout_s: int = 0,
    ) -> CoinOutcome:
        """Pay a checkout merchant (`merchant_ref`: its id, 32 hex digits) in coins, in the
        caller's transaction. Risk judges it as a `coin_payment`, with limits of its own.
        Then one linked batch across both ledgers: the coins retired (purse → coins
        issued) and their CNY value from coin sales to `merchant_account`, since the
        platform took the CNY when it sold the coins. With `hold_timeout_s` only the coins
        are held (a pending transfer the ledger releases itself after the timeout);
        `end_merchant_hold_in` posts or voids it. Declined `insufficient_coins`. The coin
        transfer's id is `merchant_payment_transfer_id(user_id, idempotency_key)`; a retry
        with the key answers the first outcome and moves nothing again."""
        request = _Request(
            CoinOperationKind.MERCHANT_PAYMENT, user_id, amount_coins, idempotency_key, merchant_ref
        )
        row = self._admit_in(tx, request)
        if row.status != CoinOperationStatus.PENDING:
            return _outcome(row)
        retire = _merchant_coins(request)
        if hold_timeout_s:
            batch = [
                dataclasses.replace(retire, flags=TransferFlags.PENDING, timeout_s=hold_timeout_s)
            ]
        else:
            value = _merchant_value(request, merchant_account, amount_coins)
            batch = [dataclasses.replace(retire, flags=TransferFlags.LINKED), value]
        results = tx.create_transfers(batch)
        if results[0] is CreateTransferResult.EXCEEDS_CREDITS:
            return _finish_on(tx.connection, row, CoinDeclineCode.INSUFFICIENT_COINS)
        _require_applied(results)
        return _finish_on(tx.connection, row, None)

    def end_merchant_hold_in(
        self, tx: LedgerTransaction, operation_id: int, merchant_account: int, captured_coins: int
    ) -> None:
        """End a held coin payment in the caller's transaction: `captured_coins` of it
        taken (the hold posted for them, their CNY value coin sales → `merchant_account`,
        the operation now shows that amount), or nothing (the hold voided, the operation
        `canceled`, counted toward no limit). A hold the ledger already let expire has
        nothing left to void."""
        ops = coin_operations.c
        row = tx.connection.execute(
            sa.select(coin_operations).where(
                ops.id == id_to_bytes(operation_id),
                ops.kind == CoinOperationKind.MERCHANT_PAYMENT.value,
                ops.status == CoinOperationStatus.COMPLETED.value,
            )
        ).one()
        assert 0 <= captured_coins <= row.amount_coins, "a hold ends once, for at most what it held"
        request = _Request(
            CoinOperationKind.MERCHANT_PAYMENT,
            id_from_bytes(row.user_id),
            row.amount_coins,
            row.idempotency_key,
            row.merchant_id,
        )
        hold = _merchant_coins(request)
        if captured_coins == 0:
            void = dataclasses.replace(
                hold,
                id=_checkout_transfer_id(request, _LEG_VOID),
                flags=TransferFlags.VOID_PENDING_TRANSFER,
                pending_id=hold.id,
            )
            (result,) = tx.create_transfers([void])
            if result is not CreateTransferResult.PENDING_TRANSFER_EXPIRED:
                _require_applied([result])
            values: dict[str, Any] = {"status": CoinOperationStatus.CANCELED.value}
        else:
            post = dataclasses.replace(
                hold,
                id=_checkout_transfer_id(request, _LEG_POST),
                amount=captured_coins,
                flags=TransferFlags.POST_PENDING_TRANSFER | TransferFlags.LINKED,
                pending_id=hold.id,
            )
            value = _merchant_value(request, merchant_account, captured_coins)
            _require_applied(tx.create_transfers([post, value]))
            values = {"amount_coins": captured_coins}
        tx.connection.execute(sa.update(coin_operations).where(ops.id == row.id).values(values))

    def receive_refund_in(
        self,
        tx: LedgerTransaction,
        user_id: int,
        merchant_ref: str,
        merchant_account: int,
        amount_coins: int,
        idempotency_key: str,
    ) -> CoinOutcome:
        """A checkout merchant's refund of a coin payment, in the caller's transaction: an
        operation in the user's coin history (`merchant_refund`, counted toward no limit)
        and one linked batch: the CNY value `merchant_account` → coin sales, the coins
        re-issued into the purse. Coins come back as coins, never as cash. Declined
        `merchant_balance_insufficient` when the merchant is owed less than the value (it
        was paid out already), with nothing moved."""
        request = _Request(
            CoinOperationKind.MERCHANT_REFUND, user_id, amount_coins, idempotency_key, merchant_ref
        )
        row = self._admit_in(tx, request)
        if row.status != CoinOperationStatus.PENDING:
            return _outcome(row)
        value_back = Transfer(
            _checkout_transfer_id(request, _LEG_CNY),
            merchant_account,
            platform_account_id(AccountCode.COIN_SALES),
            amount_coins * FEN_PER_COIN,
            LEDGER_CNY,
            TransferCode.COIN_MERCHANT_VALUE_BACK,
            TransferFlags.LINKED,
            user_data_128=user_id,
        )
        reissue = Transfer(
            _checkout_transfer_id(request, _LEG_COINS),
            platform_account_id(AccountCode.COINS_ISSUED),
            coin_purse_account_id(user_id),
            amount_coins,
            LEDGER_COINS,
            TransferCode.COIN_MERCHANT_REFUND,
            user_data_128=user_id,
        )
        results = tx.create_transfers([value_back, reissue])
        if results[0] is CreateTransferResult.EXCEEDS_CREDITS:
            return _finish_on(tx.connection, row, CoinDeclineCode.MERCHANT_BALANCE_INSUFFICIENT)
        _require_applied(results)
        return _finish_on(tx.connection, row, None)

    # -- the steps ------------------------------------------------------------------

    def _prepare(self, request: _Request) -> None:
        _check_amount(request.amount_coins)
        check_idempotency_key(request.idempotency_key)
        self.open_purse(request.user_id)

    def _admit(self, request: _Request) -> Any:
        """The operation's row: the earlier attempt under this key, else a new row,
        `pending` if risk approves (spends are not judged: no money leaves the platform),
        `declined` naming the limit if not."""
        tier = self._identity.current_tier(request.user_id)
        key = id_to_bytes(request.user_id)
        with self._write() as conn:
            lock = sa.select(wallets.c.user_id).where(wallets.c.user_id == key).with_for_update()
            conn.execute(lock).one()  # the wallet's lock: coin and wallet operations queue
            return self._admit_on(conn, request, tier)

    def _admit_in(self, tx: LedgerTransaction, request: _Request) -> Any:
        """`_admit` in the caller's transaction: the input checked, the wallet row locked
        (through the wallet, which opens it if new) and the purse opened first."""
        _check_amount(request.amount_coins)
        check_idempotency_key(request.idempotency_key)
        self._wallet.open_wallet_in(tx, request.user_id)  # UserNotFound; the user's lock
        self._open_purse_in(tx, request.user_id)
        tier = self._identity.current_tier(request.user_id, conn=tx.connection)
        return self._admit_on(tx.connection, request, tier)

    def _admit_on(self, conn: sa.Connection, request: _Request, tier: KycTier | None) -> Any:
        """Admission on `conn`, whose transaction holds the user's wallet row."""
        earlier = conn.execute(
            sa.select(coin_operations).where(
                coin_operations.c.user_id == id_to_bytes(request.user_id),
                coin_operations.c.idempotency_key == request.idempotency_key,
            )
        ).one_or_none()
        if earlier is not None:
            _check_same_request(earlier, request)
            return earlier
        if request.kind is CoinOperationKind.SPEND:
            assert request.merchant_id is not None
            self._check_open(conn, request.merchant_id)
        now_ns = self._clock.now_ns()
        decision = self._decide(conn, request, tier, now_ns)
        row = _new_row(self._ids.next_id(), request, decision, now_ns)
        conn.execute(sa.insert(coin_operations).values(row))
        return conn.execute(
            sa.select(coin_operations).where(coin_operations.c.id == row["id"])
        ).one()

    def _decide(
        self, conn: sa.Connection, request: _Request, tier: KycTier | None, now_ns: int
    ) -> Decision | None:
        risk_kind = RISK_KIND_OF_COIN.get(request.kind)
        if risk_kind is None:
            return None
        usage = count_usage(conn, id_to_bytes(request.user_id), risk_kind, tier, now_ns)
        return decide(risk_kind, tier, request.amount_coins * FEN_PER_COIN, usage)

    def _check_open(self, conn: sa.Connection, merchant_id: str) -> None:
        shutdowns = coin_merchant_shutdowns.c
        query = sa.select(shutdowns.merchant_id).where(shutdowns.merchant_id == merchant_id)
        if conn.execute(query).first() is not None:
            raise CoinMerchantShutDown(f"{MERCHANTS[merchant_id].name} has shut down")

    def _refundable(self, merchant_id: str) -> Sequence[Any]:
        ops = coin_operations.c
        query = (
            sa.select(coin_operations)
            .where(
                ops.kind == CoinOperationKind.SPEND.value,
                ops.merchant_id == merchant_id,
                ops.status == CoinOperationStatus.COMPLETED.value,
                ops.fulfilled == sa.false(),
            )
            .order_by(ops.id)
            .limit(SHUTDOWN_REFUNDS_PER_BATCH)
        )
        with self._read() as conn:
            return conn.execute(query).all()

    def _finish(
        self, row: Any, decline_code: str | None, *, reason: str | None = None
    ) -> CoinOutcome:
        with self._write() as conn:
            return _finish_on(conn, row, decline_code, reason=reason)

    def _linked_account(self, user_id: int, linked_account_id: int) -> tuple[str, str]:
        row = find_link(self._engine, user_id, linked_account_id)
        return str(row.bank_code), str(row.agreement)

    def _send(self, transfers: list[Transfer]) -> list[CreateTransferResult]:
        results = self._ledger.create_transfers(transfers)
        assert len(results) == len(transfers)
        return results

    def _require_chain_applied(
        self, chain: list[Transfer], results: Sequence[CreateTransferResult]
    ) -> None:
        """A chain sent again answers `exists` for its first leg and `linked_event_failed`
        for the rest (docs/ledger.md): applied before, as a unit, so every leg is there."""
        if all(r == CreateTransferResult.OK for r in results):
            return
        if results[0] == CreateTransferResult.EXISTS:
            found = self._ledger.lookup_transfers([t.id for t in chain])
            if len(found) == len(chain):
                return
        raise LedgerRefused(f"coin purchase refused: {', '.join(r.value for r in results)}")

    def _open_purse_in(self, tx: LedgerTransaction, user_id: int) -> None:
        kind = CHART[AccountCode.COIN_PURSE]
        purse = Account(
            coin_purse_account_id(user_id),
            kind.ledger,
            kind.code,
            kind.flags,
            user_data_128=user_id,
        )
        accounts = [*(_platform_account(c) for c in _PLATFORM_CODES), purse]
        for result, account in zip(tx.create_accounts(accounts), accounts, strict=True):
            if result not in (CreateAccountResult.OK, CreateAccountResult.EXISTS):
                raise LedgerRefused(f"account {account.id:032x}: {result.value}")

    def _create_accounts(self, accounts: list[Account]) -> None:
        for result, account in zip(self._ledger.create_accounts(accounts), accounts, strict=True):
            if result not in (CreateAccountResult.OK, CreateAccountResult.EXISTS):
                raise LedgerRefused(f"account {account.id:032x}: {result.value}")

    def _write(self) -> AbstractContextManager[sa.Connection]:
        return write_transaction(self._engine)

    def _read(self) -> AbstractContextManager[sa.Connection]:
        return read_transaction(self._engine)


# -- pure helpers -------------------------------------------------------------------

_PLATFORM_CODES = (AccountCode.COIN_SALES, AccountCode.COINS_ISSUED)


def _platform_account(code: AccountCode) -> Account:
    kind = CHART[code]
    return Account(platform_account_id(code), kind.ledger, kind.code, kind.flags)


def _purchase(request: _Request, payer_account_id: int) -> list[Transfer]:
    """One linked batch across the two ledgers: the price in CNY from the payer to coin
    sales, and the coins from the issuer to the user's purse."""
    price = Transfer(
        transfer_id(request.user_id, request.kind.value, request.idempotency_key, _LEG_CNY),
        payer_account_id,
        platform_account_id(AccountCode.COIN_SALES),
        request.amount_coins * FEN_PER_COIN,
        CHART[AccountCode.COIN_SALES].ledger,
        TransferCode.COIN_PURCHASE,
        TransferFlags.LINKED,
        user_data_128=request.user_id,
    )
    issue = Transfer(
        transfer_id(request.user_id, request.kind.value, request.idempotency_key, _LEG_COINS),
        platform_account_id(AccountCode.COINS_ISSUED),
        coin_purse_account_id(request.user_id),
        request.amount_coins,
        LEDGER_COINS,
        TransferCode.COIN_ISSUE,
        user_data_128=request.user_id,
    )
    return [price, issue]


def _spend_transfer(request: _Request) -> Transfer:
    """A spend: the coins from the purse back to the issuer, which retires them."""
    return Transfer(
        transfer_id(request.user_id, request.kind.value, request.idempotency_key, _LEG_COINS),
        coin_purse_account_id(request.user_id),
        platform_account_id(AccountCode.COINS_ISSUED),
        request.amount_coins,
        LEDGER_COINS,
        TransferCode.COIN_SPEND,
        user_data_128=request.user_id,
    )


def _refund_transfer(row: Any) -> Transfer:
    """The shutdown refund of a spend: the same coins from the issuer back to the purse."""
    user_id = id_from_bytes(row.user_id)
    return Transfer(
        transfer_id(user_id, _REFUND_TRANSFER_KIND, row.idempotency_key, _LEG_COINS),
        platform_account_id(AccountCode.COINS_ISSUED),
        coin_purse_account_id(user_id),
        row.amount_coins,
        LEDGER_COINS,
        TransferCode.COIN_SHUTDOWN_REFUND,
        user_data_128=user_id,
    )


def merchant_payment_transfer_id(user_id: int, idempotency_key: str) -> int:
    """The id of the coin transfer (or hold) of the user's checkout payment under the key."""
    request = _Request(CoinOperationKind.MERCHANT_PAYMENT, user_id, 1, idempotency_key)
    return _checkout_transfer_id(request, _LEG_COINS)


def _checkout_transfer_id(request: _Request, leg: int) -> int:
    kind = _CHECKOUT_TRANSFER_PREFIX + request.kind.value
    return transfer_id(request.user_id, kind, request.idempotency_key, leg)


def _merchant_coins(request: _Request) -> Transfer:
    """A checkout payment's coins: from the purse back to the issuer, which retires them."""
    return Transfer(
        _checkout_transfer_id(request, _LEG_COINS),
        coin_purse_account_id(request.user_id),
        platform_account_id(AccountCode.COINS_ISSUED),
        request.amount_coins,
        LEDGER_COINS,
        TransferCode.COIN_MERCHANT_PAYMENT,
        user_data_128=request.user_id,
    )


def _merchant_value(request: _Request, merchant_account: int, coins: int) -> Transfer:
    """The CNY value of `coins` taken by a checkout merchant: coin sales → the merchant."""
    return Transfer(
        _checkout_transfer_id(request, _LEG_CNY),
        platform_account_id(AccountCode.COIN_SALES),
        merchant_account,
        coins * FEN_PER_COIN,
        LEDGER_CNY,
        TransferCode.COIN_MERCHANT_VALUE,
        user_data_128=request.user_id,
    )


def _finish_on(
    conn: sa.Connection, row: Any, decline_code: str | None, *, reason: str | None = None
) -> CoinOutcome:
    status = CoinOperationStatus.DECLINED if decline_code else CoinOperationStatus.COMPLETED
    values = {"status": status.value, "decline_code": decline_code, "decline_reason": reason}
    where = coin_operations.c.id == row.id
    conn.execute(sa.update(coin_operations).where(where).values(values))
    return _outcome(conn.execute(sa.select(coin_operations).where(where)).one())


def _require_applied(results: Sequence[CreateTransferResult]) -> None:
    for result in results:
        if result not in (CreateTransferResult.OK, CreateTransferResult.EXISTS):
            raise LedgerRefused(f"coin transfer refused: {', '.join(r.value for r in results)}")


def _reference(request: _Request) -> str:
    """The bank reference of a card purchase: the same for every retry of it."""
    leg = transfer_id(request.user_id, request.kind.value, request.idempotency_key, _LEG_CNY)
    return f"{leg:032x}"


def _check_merchant(merchant_id: str) -> None:
    merchant = MERCHANTS.get(merchant_id)
    if merchant is None:
        raise CoinMerchantUnknown(f"no coin merchant {merchant_id!r}")
    if merchant.category not in _DIGITAL_GOODS:
        raise CoinMerchantNotDigitalGoods(
            f"{merchant.name} sells {merchant.category}; coins buy only "
            f"{', '.join(sorted(_DIGITAL_GOODS))}"
        )


def _check_amount(amount_coins: object) -> None:
    if not isinstance(amount_coins, int) or isinstance(amount_coins, bool):
        raise AmountInvalid(
            f"amount_coins must be an int of whole coins, got {type(amount_coins).__name__}"
        )
    if not 0 < amount_coins <= AMOUNT_COINS_MAX:
        raise AmountInvalid(
            f"amount_coins must be between 1 and {AMOUNT_COINS_MAX}, got {amount_coins}"
        )


def _check_same_request(row: Any, request: _Request) -> None:
    linked = (
        id_to_bytes(request.linked_account_id) if request.linked_account_id is not None else None
    )
    same = (
        row.kind == request.kind.value
        and row.amount_coins == request.amount_coins
        and row.merchant_id == request.merchant_id
        and row.linked_account_id == linked
    )
    if not same:
        raise IdempotencyKeyReused(
            f"idempotency key {request.idempotency_key!r} was used for a coin {row.kind} of "
            f"{row.amount_coins} coins; a different operation needs a new key"
        )


def _new_row(
    op_id: int, request: _Request, decision: Decision | None, now_ns: int
) -> dict[str, Any]:
    approved = decision is None or decision.approved
    declined = decision is not None and not decision.approved
    return {
        "id": id_to_bytes(op_id),
        "user_id": id_to_bytes(request.user_id),
        "idempotency_key": request.idempotency_key,
        "kind": request.kind.value,
        "amount_coins": request.amount_coins,
        "merchant_id": request.merchant_id,
        "linked_account_id": (
            id_to_bytes(request.linked_account_id)
            if request.linked_account_id is not None
            else None
        ),
        "status": (CoinOperationStatus.PENDING if approved else CoinOperationStatus.DECLINED).value,
        "fulfilled": False,
        "decline_code": decision.code.value if decision is not None and decision.code else None,
        "decline_limit": decision.limit if decision is not None and declined else None,
        "decline_remaining": decision.remaining if decision is not None and declined else None,
        "decline_reason": None,
        "created_at": now_ns,
    }


def _outcome(row: Any) -> CoinOutcome:
    return CoinOutcome(
        id_from_bytes(row.id),
        CoinOperationKind(row.kind),
        row.amount_coins,
        CoinOperationStatus(row.status),
        row.decline_code,
        row.decline_limit,
        row.decline_remaining,
        row.decline_reason,
        row.merchant_id,
        bool(row.fulfilled),
    )
