"""The card network's own books: the authorization keys it has seen, a clearing record
for every approved transaction, and the advices it owes the issuers.

`NetworkBooks(engine, keyring, clock)` is blocking (the switch runs it in worker threads)
and thread-safe. Card numbers are sealed with the key ring (AAD = the row's id) and
compared by a keyed fingerprint; only masks are in clear. It decides nothing: the switch
says what to write.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa

from milletpay.cards.pan import mask_pan
from milletpay.core.clock import Clock
from milletpay.core.ids import IdGenerator, id_from_bytes, id_to_bytes
from milletpay.core.keyring import KeyRing
from milletpay.ledger.committer import GroupCommitter, RowWriter, settled
from milletpay.network.iso8583 import Message, decode, encode
from milletpay.network.tables import clearing_records, network_messages_seen, stand_in_advices
from milletpay.store.engine import ConnectionTransaction, read_transaction, write_transaction
from milletpay.store.sql import Sql

__all__ = [
    "ADVICES_LISTED_MAX",
    "FORGET_BATCH_MAX",
    "RECORDS_LISTED_MAX",
    "SEEN_RETENTION_S",
    "AdviceStatus",
    "Approval",
    "ClearingRecord",
    "ClearingStatus",
    "MessageKey",
    "NetworkBooks",
    "PendingAdvice",
]

#: Rows one call lists at most (clearing records, advices to send).
RECORDS_LISTED_MAX: Final = 10_000
ADVICES_LISTED_MAX: Final = 1_000
FINGERPRINT_PURPOSE: Final = b"milletpay/network/card-fingerprint/v1"
#: How long a duplicate key is kept: far beyond any retry, well within the year after
#: which field 7 (MMDDhhmmss, no year) comes round again.
SEEN_RETENTION_S: Final = 30 * 86_400
#: Keys one `forget_seen` call removes at most.
FORGET_BATCH_MAX: Final = 10_000


class ClearingStatus(enum.StrEnum):
    AUTHORIZED = "authorized"  # a hold at the issuer, not yet completed
    COMPLETED = "completed"  # to be settled: `completed_fen`
    REVERSED = "reversed"  # nothing to settle


class AdviceStatus(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"


@dataclass(frozen=True, slots=True)
class MessageKey:
    """What names one authorization on the network: acquirer (32), terminal (41), STAN
    (11), transmission date and time (7)."""

    acquirer: str
    terminal: str
    stan: str
    transmitted: str

    @classmethod
    def of(cls, message: Message) -> MessageKey:
        return cls(message.text(32), message.text(41), message.text(11), message.text(7))

    @classmethod
    def original_of(cls, message: Message) -> MessageKey:
        """The key of the request a completion or reversal names in field 90 (same
        acquirer and terminal)."""
        original = message.text(90)
        return cls(message.text(32), message.text(41), original[4:10], original[10:20])

    def where(self, table: sa.Table) -> tuple[sa.ColumnElement[bool], ...]:
        c = table.c
        return (
            c.acquirer == self.acquirer,
            c.terminal == self.terminal,
            c.stan == self.stan,
            c.transmitted == self.transmitted,
        )


@dataclass(frozen=True, slots=True)
class ClearingRecord:
    """One approved transaction, for settlement. Its repr holds no card number."""

    id: int
    acquirer: str
    terminal: str
    stan: str
    transmitted: str
    rrn: str
    mti: str
    pan_masked: str
    token_number: str | None
    bank_code: str
    amount_fen: int
    completed_fen: int
    currency: str
    approval_code: str
    stand_in: bool
    status: ClearingStatus
    created_at_ns: int
    updated_at_ns: int
    #: Field 3 of the approved request: `000000` a purchase, `200000` a refund (a credit).
    processing_code: str = "000000"

    @property
    def key(self) -> MessageKey:
        return MessageKey(self.acquirer, self.terminal, self.stan, self.transmitted)


@dataclass(frozen=True, slots=True, repr=False)
class PendingAdvice:
    id: int
    bank_code: str
    record_id: int | None
    message: Message  # carries the card number: its repr masks it

    def __repr__(self) -> str:
        return f"PendingAdvice({self.id:032x}, {self.bank_code}, {self.message!r})"


@dataclass(frozen=True, slots=True)
class Approval:
    """What the switch asks the books to record for one approved request."""

    key: MessageKey
    rrn: str
    mti: str
    pan: str
    token_number: str | None
    bank_code: str
    amount_fen: int
    currency: str
    approval_code: str
    stand_in: bool
    processing_code: str = "000000"


class NetworkBooks:
    def __init__(
        self,
        engine: sa.Engine,
        keyring: KeyRing,
        clock: Clock,
        *,
        committer: GroupCommitter[ConnectionTransaction] | None = None,
    ) -> None:
        """`committer`: the switch's claims and clearing records are written through it,
        many taps' in one transaction (its owner closes it); None: each in its own."""
        self._engine = engine
        self._writer = RowWriter(engine, committer)
        self._keyring = keyring
        self._clock = clock
        self._ids = IdGenerator(clock)
        self._fingerprint_key = keyring.derive(FINGERPRINT_PURPOSE)

    def fingerprint(self, pan: str) -> bytes:
        return hmac.new(self._fingerprint_key, pan.encode("ascii"), hashlib.sha256).digest()

    # -- duplicate detection -----------------------------------------------------------

    def claim(self, key: MessageKey, mti: str) -> bool:
        """Record `key` as seen; False if it was seen before (a duplicate)."""
        return _claimed(self._submit_claim(key, mti))

    async def claim_async(self, key: MessageKey, mti: str) -> bool:
        """`claim`, awaited on the event loop instead of a thread."""
        return _claimed(await settled(self._submit_claim(key, mti)))

    def _submit_claim(self, key: MessageKey, mti: str) -> Future[Any]:
        row = {
            "acquirer": key.acquirer,
            "terminal": key.terminal,
            "stan": key.stan,
            "transmitted": key.transmitted,
            "mti": mti,
            "seen_at": self._clock.now_ns(),
        }
        return self._writer.submit(lambda conn: _INSERT_SEEN.run(conn, **row))

    def forget_seen(self, before_ns: int, limit: int) -> int:
        """Forget at most `limit` keys first seen before `before_ns` (a maintenance run
        passes now less `SEEN_RETENTION_S`); how many went."""
        assert 1 <= limit <= FORGET_BATCH_MAX
        c = network_messages_seen.c
        with write_transaction(self._engine) as conn:
            old = conn.execute(
                sa.select(c.acquirer, c.terminal, c.stan, c.transmitted)
                .where(c.seen_at < before_ns)
                .order_by(c.seen_at)
                .limit(limit)
            ).all()
            for row in old:
                conn.execute(
                    sa.delete(network_messages_seen).where(
                        *MessageKey(*row).where(network_messages_seen)
                    )
                )
        return len(old)

    # -- clearing records --------------------------------------------------------------

    def record_approval(
        self, approval: Approval, advices: tuple[Message, ...] = ()
    ) -> ClearingRecord:
        """The clearing record of an approval, and the advices it owes the issuer (a
        stand-in's), in one transaction."""
        values, written = self._submit_approval(approval, advices)
        written.result()
        return _record(values)

    async def record_approval_async(self, approval: Approval) -> ClearingRecord:
        """`record_approval` (no advices), awaited on the event loop instead of a thread."""
        values, written = self._submit_approval(approval, ())
        (await settled(written)).result()
        return _record(values)

    def _submit_approval(
        self, approval: Approval, advices: tuple[Message, ...]
    ) -> tuple[dict[str, Any], Future[None]]:
        record_id = self._ids.next_id()
        now_ns = self._clock.now_ns()
        completed = approval.mti == "0200"
        values = {
            "id": id_to_bytes(record_id),
            "acquirer": approval.key.acquirer,
            "terminal": approval.key.terminal,
            "stan": approval.key.stan,
            "transmitted": approval.key.transmitted,
            "rrn": approval.rrn,
            "mti": approval.mti,
            "processing_code": approval.processing_code,
            "pan_masked": mask_pan(approval.pan),
            "pan_sealed": self._keyring.seal(approval.pan.encode("ascii"), _aad(b"pan", record_id)),
            "token_number": approval.token_number,
            "bank_code": approval.bank_code,
            "amount_fen": approval.amount_fen,
            "completed_fen": approval.amount_fen if completed else 0,
            "currency": approval.currency,
            "approval_code": approval.approval_code,
            "stand_in": approval.stand_in,
            "card_fingerprint": self.fingerprint(approval.pan),
            "status": (ClearingStatus.COMPLETED if completed else ClearingStatus.AUTHORIZED).value,
            "created_at": now_ns,
            "updated_at": now_ns,
        }

        def unit(conn: sa.Connection) -> None:
            _INSERT_RECORD.run(conn, **values)
            for advice in advices:
                self._insert_advice(conn, approval.bank_code, advice, record_id)

        return values, self._writer.submit(unit)

    def record(self, key: MessageKey) -> ClearingRecord | None:
        with read_transaction(self._engine) as conn:
            row = conn.execute(sa.select(clearing_records).where(*key.where(clearing_records)))
            found = row.first()
        return None if found is None else _record(found._asdict())

    def pan_of(self, record: ClearingRecord) -> str:
        with read_transaction(self._engine) as conn:
            sealed = conn.execute(
                sa.select(clearing_records.c.pan_sealed).where(
                    clearing_records.c.id == id_to_bytes(record.id)
                )
            ).scalar_one()
        return self._keyring.open(bytes(sealed), _aad(b"pan", record.id)).decode("ascii")

    def resolve(
        self,
        record: ClearingRecord,
        status: ClearingStatus,
        completed_fen: int,
        advice: Message | None = None,
    ) -> None:
        """Mark the record completed or reversed (and queue the advice that tells the
        issuer, when it could not be told now), in one transaction."""
        with write_transaction(self._engine) as conn:
            conn.execute(
                sa.update(clearing_records)
                .where(clearing_records.c.id == id_to_bytes(record.id))
                .values(
                    status=status.value,
                    completed_fen=completed_fen,
                    updated_at=self._clock.now_ns(),
                )
            )
            if advice is not None:
                self._insert_advice(conn, record.bank_code, advice, record.id)

    def stand_in_spent_fen(self, pan: str, since_ns: int) -> int:
        """What the network approved in stand-in for the card since `since_ns` and did
        not see reversed."""
        c = clearing_records.c
        query = sa.select(sa.func.coalesce(sa.func.sum(c.amount_fen), 0)).where(
            c.card_fingerprint == self.fingerprint(pan),
            c.stand_in.is_(True),
            c.created_at >= since_ns,
            c.status != ClearingStatus.REVERSED.value,
        )
        with read_transaction(self._engine) as conn:
            return int(conn.execute(query).scalar_one())

    def clearing_records(self, limit: int = RECORDS_LISTED_MAX) -> list[ClearingRecord]:
        """The clearing records, oldest first, at most `limit`."""
        assert 1 <= limit <= RECORDS_LISTED_MAX
        query = sa.select(clearing_records).order_by(clearing_records.c.id).limit(limit)
        with read_transaction(self._engine) as conn:
            return [_record(row._asdict()) for row in conn.execute(query)]

    def clearing_count(self) -> int:
        """How many clearing records there are."""
        query = sa.select(sa.func.count()).select_from(clearing_records)
        with read_transaction(self._engine) as conn:
            return int(conn.execute(query).scalar_one())

    # -- advices -----------------------------------------------------------------------

    def queue_advice(self, bank_code: str, message: Message, record_id: int | None) -> None:
        with write_transaction(self._engine) as conn:
            self._insert_advice(conn, bank_code, message, record_id)

    def _insert_advice(
        self, conn: sa.Connection, bank_code: str, message: Message, record_id: int | None
    ) -> None:
        advice_id = self._ids.next_id()
        conn.execute(
            sa.insert(stand_in_advices).values(
                id=id_to_bytes(advice_id),
                bank_code=bank_code,
                mti=message.mti,
                record_id=None if record_id is None else id_to_bytes(record_id),
                message_sealed=self._keyring.seal(encode(message), _aad(b"advice", advice_id)),
                status=AdviceStatus.PENDING.value,
                attempts=0,
                created_at=self._clock.now_ns(),
            )
        )

    def pending_advices(self, limit: int = ADVICES_LISTED_MAX) -> list[PendingAdvice]:
        """Advices not yet delivered, oldest first (the order they must reach the
        issuer in), at most `limit`."""
        assert 1 <= limit <= ADVICES_LISTED_MAX
        c = stand_in_advices.c
        query = (
            sa.select(c.id, c.bank_code, c.record_id, c.message_sealed)
            .where(c.status == AdviceStatus.PENDING.value)
            .order_by(c.id)
            .limit(limit)
        )
        with read_transaction(self._engine) as conn:
            rows = conn.execute(query).all()
        return [self._advice(row) for row in rows]

    def _advice(self, row: Any) -> PendingAdvice:
        advice_id = id_from_bytes(row.id)
        data = self._keyring.open(bytes(row.message_sealed), _aad(b"advice", advice_id))
        record_id = None if row.record_id is None else id_from_bytes(row.record_id)
        return PendingAdvice(advice_id, row.bank_code, record_id, decode(data))

    def advice_attempted(self, advice_id: int, *, delivered: bool) -> None:
        c = stand_in_advices.c
        values: dict[str, Any] = {"attempts": c.attempts + 1}
        if delivered:
            values |= {"status": AdviceStatus.DELIVERED.value, "delivered_at": self._clock.now_ns()}
        with write_transaction(self._engine) as conn:
            conn.execute(
                sa.update(stand_in_advices).where(c.id == id_to_bytes(advice_id)).values(values)
            )


#: Built once: the statements every tap runs.
_INSERT_SEEN: Final = Sql.insert(network_messages_seen)
_INSERT_RECORD: Final = Sql.insert(clearing_records)


def _claimed(written: Future[Any]) -> bool:
    """Whether a claim's row was written: not if its key was there (a duplicate)."""
    try:
        written.result()
    except sa.exc.IntegrityError:
        return False
    return True


def _aad(kind: bytes, row_id: int) -> bytes:
    return b"network|" + kind + b"|" + id_to_bytes(row_id)


def _record(row: dict[str, Any]) -> ClearingRecord:
    return ClearingRecord(
        id=id_from_bytes(row["id"]),
        acquirer=row["acquirer"],
        terminal=row["terminal"],
        stan=row["stan"],
        transmitted=row["transmitted"],
        rrn=row["rrn"],
        mti=row["mti"],
        pan_masked=row["pan_masked"],
        token_number=row["token_number"],
        bank_code=row["bank_code"],
        amount_fen=row["amount_fen"],
        completed_fen=row["completed_fen"],
        currency=row["currency"],
        approval_code=row["approval_code"],
        stand_in=bool(row["stand_in"]),
        status=ClearingStatus(row["status"]),
        created_at_ns=row["created_at"],
        updated_at_ns=row["updated_at"],
        processing_code=row["processing_code"],
    )
