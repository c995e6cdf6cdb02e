"""The acquirer host: turns a terminal's online request into ISO 8583 and sends it to the
card network switch over one persistent connection.

`AcquirerHost.authorize` builds an 0100 (dual-message merchants) or an 0200
(single-message merchants) from the kernel's outcome and the merchant data, sends it, and
answers an `AcquirerResult`. A request that got no answer, or whose link was lost after
it may have left, is reversed (0400, retried with backoff), so that no hold is left
behind. Approved dual-message authorizations wait for their 0220 completion advice,
sent by `complete` or the end-of-day `upload_batch`, and resent unchanged until a 0230
answers. A decline is an answer, not an exception.

It keeps its records (STANs, pending completions and reversals, a journal) in memory,
each in a bounded structure: a restart forgets them. It never decides an authorization,
never touches the ledger and never logs card data.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import enum
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Final

from milletpay.acquiring.kernel import (
    AMOUNT_MINOR_MAX,
    TTQ_ONLINE_PIN,
    Cvm,
    KernelOutcome,
    OutcomeKind,
)
from milletpay.acquiring.merchants import MerchantDirectory, MerchantSpec, MessageStyle
from milletpay.core.clock import NS_PER_S, Clock
from milletpay.core.errors import MilletError
from milletpay.emv import tlv
from milletpay.emv.tlv import TlvError
from milletpay.network.iso8583 import (
    APPROVED,
    FieldValue,
    Message,
    StanSequence,
    original_data_elements,
    retrieval_reference,
    transmission_date_time,
    validate,
)
from milletpay.network.link import Iso8583Client, LinkClosed, ResponseTimeout

__all__ = [
    "BATCH_ADVICES_MAX",
    "BATCH_IN_FLIGHT_MAX",
    "COMPLETED_KEPT_MAX",
    "CONNECT_TIMEOUT_S",
    "JOURNAL_MAX",
    "PENDING_COMPLETIONS_MAX",
    "PENDING_REVERSALS_MAX",
    "RESPONSE_TIMEOUT_S",
    "REVERSALS_KEPT_MAX",
    "REVERSAL_ATTEMPTS_MAX",
    "REVERSAL_BACKOFF_MAX_S",
    "REVERSAL_BACKOFF_S",
    "AcquirerError",
    "AcquirerHost",
    "AcquirerResult",
    "BatchReport",
    "Completion",
    "CompletionStatus",
    "ResultStatus",
    "Reversal",
    "completion_advice",
    "request_message",
    "reversal_request",
]

RESPONSE_TIMEOUT_S: Final = 2.0  # the wait for an answer to any request the host sends
CONNECT_TIMEOUT_S: Final = 2.0  # the wait for a connection to the switch
REVERSAL_ATTEMPTS_MAX: Final = 5  # sends of one 0400 before it waits for the next batch
REVERSAL_BACKOFF_S: Final = 0.5  # the wait before the second attempt, doubled each time
REVERSAL_BACKOFF_MAX_S: Final = 8.0
PENDING_COMPLETIONS_MAX: Final = 10_000  # approved 0100s awaiting their 0220 answer
PENDING_REVERSALS_MAX: Final = 1_000  # 0400s awaiting their 0410
BATCH_ADVICES_MAX: Final = 1_000  # 0220s one `upload_batch` sends
BATCH_IN_FLIGHT_MAX: Final = 8  # 0220s of a batch awaiting answers at once
JOURNAL_MAX: Final = 10_000  # results kept for reading back
COMPLETED_KEPT_MAX: Final = 10_000  # answered completions kept
REVERSALS_KEPT_MAX: Final = 1_000  # answered reversals kept

#: Local time (fields 12 and 13) is China Standard Time, UTC+8, no daylight saving.
CHINA_TIME: Final = datetime.timezone(datetime.timedelta(hours=8), "CST")
PROCESSING_PURCHASE: Final = "000000"  # field 3: purchase, default accounts
CONDITION_NORMAL: Final = "00"  # field 25
ENTRY_CONTACTLESS_CHIP: Final = "07"  # field 22, first two digits
PIN_CAPABLE, PIN_NOT_CAPABLE = "1", "2"  # field 22, third digit
REVERSAL_REASON_NO_ANSWER: Final = "68"  # field 39 of an 0400: response received too late
REQUEST_MTIS: Final[Mapping[MessageStyle, str]] = {
    MessageStyle.DUAL: "0100",
    MessageStyle.SINGLE: "0200",
}
COMPLETION_MTI: Final = "0220"
REVERSAL_MTI: Final = "0400"
#: The request's fields an 0400 or an 0220 carries over unchanged (track 2 and the ICC
#: data stay behind: the issuer has seen them and they are sensitive).
CARRIED_FIELDS: Final = (2, 3, 4, 12, 13, 14, 18, 22, 23, 25, 32, 37, 41, 42, 43, 49)
FEE_ZEROS: Final = "0" * 9  # fields 95's two fees: Millet Pay charges none in-band


class AcquirerError(MilletError):
    """A request the host cannot send: nothing was sent. `code` says why."""

    code = "acquirer_request_invalid"


class ResultStatus(enum.StrEnum):
    APPROVED = "approved"
    DECLINED = "declined"  # any answer other than 00; `response_code` says which
    TIMED_OUT_REVERSED = "timed_out_reversed"  # no answer; the 0400 was answered
    TIMED_OUT_REVERSAL_PENDING = "timed_out_reversal_pending"  # the 0400 waits to be resent
    SWITCH_UNAVAILABLE = "switch_unavailable"  # no connection: nothing was sent


class CompletionStatus(enum.StrEnum):
    PENDING = "pending"  # no 0230 yet; the next batch sends the same 0220
    COMPLETED = "completed"


@dataclass(frozen=True, slots=True)
class Reversal:
    request: Message  # the 0400
    response: Message | None  # its 0410, None while unanswered
    attempts: int

    @property
    def answered(self) -> bool:
        return self.response is not None


@dataclass(frozen=True, slots=True)
class AcquirerResult:
    status: ResultStatus
    terminal_id: str
    stan: str
    rrn: str
    request: Message  # the 0100 or 0200 as sent
    response: Message | None = None  # the 0110 or 0210
    reversal: Reversal | None = None

    @property
    def approved(self) -> bool:
        return self.status is ResultStatus.APPROVED

    @property
    def response_code(self) -> str | None:
        return None if self.response is None else self.response.text(39)

    @property
    def approval_code(self) -> str | None:
        value = None if self.response is None else self.response.fields.get(38)
        return value if isinstance(value, str) else None

    @property
    def icc_response(self) -> bytes | None:
        """Field 55 of the answer: the ARPC and any issuer scripts."""
        value = None if self.response is None else self.response.fields.get(55)
        return value if isinstance(value, bytes) else None

    @property
    def issuer_authentication_data(self) -> bytes | None:
        """Tag 91 of the answer's field 55 (the ARPC and its response code), if any."""
        icc = self.icc_response
        if icc is None:
            return None
        try:
            return tlv.primitives(tlv.decode(icc)).get("91")
        except TlvError:
            return None


@dataclass(frozen=True, slots=True)
class Completion:
    terminal_id: str
    rrn: str
    authorized_fen: int
    final_fen: int | None  # None until `complete` or a batch fixes it
    status: CompletionStatus
    advice: Message | None  # the 0220, built once and resent unchanged
    response: Message | None  # its 0230
    attempts: int


@dataclass(frozen=True, slots=True)
class BatchReport:
    advices_sent: int
    completed: int
    completions_pending: int
    reversals_answered: int
    reversals_pending: int


@dataclass(slots=True)
class _Authorized:
    """An approved 0100 waiting for its completion to be answered."""

    request: Message
    response: Message
    final_fen: int | None = None
    advice: Message | None = None
    attempts: int = 0
    sending: bool = False

    def snapshot(self, status: CompletionStatus, answer: Message | None = None) -> Completion:
        return Completion(
            self.request.text(41),
            self.request.text(37),
            int(self.request.text(4)),
            self.final_fen,
            status,
            self.advice,
            answer,
            self.attempts,
        )


@dataclass(slots=True)
class _Reversing:
    request: Message
    attempts: int = 0
    sending: bool = False


class _Unreachable(Exception):
    """No connection to the switch: the message was not sent."""


# -- the messages --------------------------------------------------------------------------


def request_message(
    outcome: KernelOutcome,
    merchant: MerchantSpec,
    terminal_id: str,
    *,
    institution_id: str,
    currency_numeric: str,
    amount_fen: int,
    stan: str,
    now_ns: int,
    pin_block: bytes | None = None,
) -> Message:
    """The 0100 or 0200 (by the merchant's style) for a kernel's online request; not
    validated. Field 22's third digit is the terminal's PIN capability, read off its TTQ."""
    card = outcome.authorization
    assert card is not None and outcome.kind is OutcomeKind.ONLINE_REQUEST
    terminal = next(t for t in merchant.terminals if t.terminal_id == terminal_id)
    byte, mask = TTQ_ONLINE_PIN
    pin_capability = PIN_CAPABLE if terminal.config.ttq[byte] & mask else PIN_NOT_CAPABLE
    local = datetime.datetime.fromtimestamp(now_ns // NS_PER_S, tz=CHINA_TIME)
    fields: dict[int, FieldValue] = {
        2: card.pan,
        3: PROCESSING_PURCHASE,
        4: f"{amount_fen:012d}",
        7: transmission_date_time(now_ns),
        11: stan,
        12: local.strftime("%H%M%S"),
        13: local.strftime("%m%d"),
        14: card.expiry_yymmdd[:4],
        18: merchant.mcc,
        22: ENTRY_CONTACTLESS_CHIP + pin_capability,
        25: CONDITION_NORMAL,
        32: institution_id,
        37: retrieval_reference(now_ns, stan),
        41: terminal_id,
        42: merchant.merchant_id,
        43: merchant.name_location,
        49: currency_numeric,
        55: card.icc_data,
    }
    if card.psn is not None:
        fields[23] = f"{card.psn:03d}"
    if card.track2:
        # Track 2 equivalent data (57) is BCD with a D separator and F padding; field 35
        # is its ASCII form with ISO 7813's "=" separator.
        fields[35] = card.track2.hex().upper().rstrip("F").replace("D", "=")
    if pin_block is not None:
        fields[52] = pin_block
    return Message(REQUEST_MTIS[merchant.style], fields)


def reversal_request(original: Message, *, stan: str, now_ns: int) -> Message:
    """The 0400 that undoes `original` in full: its fields (`CARRIED_FIELDS`), a new STAN
    and field 7, 39 = 68 (no answer in time) and field 90 naming the original."""
    carried = {n: v for n, v in original.fields.items() if n in CARRIED_FIELDS}
    return Message(
        REVERSAL_MTI,
        carried
        | {
            7: transmission_date_time(now_ns),
            11: stan,
            39: REVERSAL_REASON_NO_ANSWER,
            90: original_data_elements(original),
        },
    )


def completion_advice(
    authorization: Message, approval: Message, *, final_fen: int, stan: str, now_ns: int
) -> Message:
    """The 0220 that completes an approved 0100: its fields (`CARRIED_FIELDS`, field 4
    the authorized amount), a new STAN and field 7, the approval code (38) and 39 = 00,
    field 90 naming the 0100, and, when the final amount differs, field 95 with the final
    amount as the actual and settlement amounts (no fees)."""
    authorized_fen = int(authorization.text(4))
    assert 0 < final_fen <= authorized_fen
    fields = {n: v for n, v in authorization.fields.items() if n in CARRIED_FIELDS}
    fields |= {
        7: transmission_date_time(now_ns),
        11: stan,
        38: approval.text(38),
        39: APPROVED,
        90: original_data_elements(authorization),
    }
    if final_fen != authorized_fen:
        fields[95] = f"{final_fen:012d}{final_fen:012d}{FEE_ZEROS}{FEE_ZEROS}"
    return Message(COMPLETION_MTI, fields)


# -- the host --------------------------------------------------------------------------------


class AcquirerHost:
    """The acquirer's link to the switch at `switch_host`:`switch_port`, for the merchants
    and terminals of `merchants`. One connection, opened on first use and again after it
    is lost. `clock` gives every field 7, 12, 13 and 37."""

    def __init__(
        self,
        switch_host: str,
        switch_port: int,
        clock: Clock,
        merchants: MerchantDirectory,
        *,
        response_timeout_s: float = RESPONSE_TIMEOUT_S,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        reversal_attempts_max: int = REVERSAL_ATTEMPTS_MAX,
        reversal_backoff_s: float = REVERSAL_BACKOFF_S,
        last_stans: Mapping[str, int] | None = None,
    ) -> None:
        """`last_stans`: each terminal's last STAN before this start (`last_stans()` of
        the host before), so that a restarted acquirer never sends a STAN again."""
        assert response_timeout_s > 0 and connect_timeout_s > 0
        assert reversal_attempts_max >= 1 and reversal_backoff_s >= 0
        self._address = (switch_host, switch_port)
        self._clock = clock
        self._merchants = merchants
        self._response_timeout_s = response_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._reversal_attempts_max = reversal_attempts_max
        self._reversal_backoff_s = reversal_backoff_s
        self._link_state: (
            tuple[Iso8583Client, asyncio.StreamReader, asyncio.StreamWriter] | None
        ) = None
        self._connecting = asyncio.Lock()
        kept = last_stans or {}
        self._stans = {tid: StanSequence(kept.get(tid, 0)) for tid in merchants.terminal_ids()}
        self._in_flight = 0
        self._pending: dict[tuple[str, str], _Authorized] = {}
        self._reversing: dict[tuple[str, str], _Reversing] = {}
        self._completed: deque[Completion] = deque(maxlen=COMPLETED_KEPT_MAX)
        self._reversed: deque[Reversal] = deque(maxlen=REVERSALS_KEPT_MAX)
        self._journal: deque[AcquirerResult] = deque(maxlen=JOURNAL_MAX)

    def last_stans(self) -> dict[str, int]:
        """Each terminal's last STAN sent: what to start the next host with."""
        return {tid: sequence.last for tid, sequence in self._stans.items()}

    async def __aenter__(self) -> AcquirerHost:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._link_state is not None:
            await self._drop(self._link_state[0])

    # -- reading back --

    def journal(self) -> tuple[AcquirerResult, ...]:
        """The latest `JOURNAL_MAX` results, oldest first."""
        return tuple(self._journal)

    def pending_completions(self) -> tuple[Completion, ...]:
        return tuple(a.snapshot(CompletionStatus.PENDING) for a in self._pending.values())

    def completed(self) -> tuple[Completion, ...]:
        """The latest `COMPLETED_KEPT_MAX` answered completions, oldest first."""
        return tuple(self._completed)

    def pending_reversals(self) -> tuple[Reversal, ...]:
        return tuple(Reversal(r.request, None, r.attempts) for r in self._reversing.values())

    def reversals(self) -> tuple[Reversal, ...]:
        """The latest `REVERSALS_KEPT_MAX` answered reversals, oldest first."""
        return tuple(self._reversed)

    # -- authorization --

    async def authorize(
        self,
        terminal_id: str,
        outcome: KernelOutcome,
        amount_fen: int,
        *,
        pin_block: bytes | None = None,
    ) -> AcquirerResult:
        """Sends the kernel's online request for `amount_fen` from `terminal_id` and
        answers the switch's decision, or what became of a request with no answer.
        `AcquirerError` (nothing sent) for an unknown terminal, an outcome that is not an
        online request, an amount other than the one the card signed, a missing or
        unasked-for PIN block, or a host at its limits."""
        merchant = self._merchant_of(terminal_id)
        _check_outcome(outcome, amount_fen, pin_block)
        self._check_room(merchant)
        stan = self._stans[terminal_id].next()
        request = request_message(
            outcome,
            merchant,
            terminal_id,
            institution_id=self._merchants.institution_id,
            currency_numeric=self._merchants.currency_numeric,
            amount_fen=amount_fen,
            stan=stan,
            now_ns=self._clock.now_ns(),
            pin_block=pin_block,
        )
        validate(request)
        self._in_flight += 1
        try:
            result = await self._exchange(merchant, request)
        finally:
            self._in_flight -= 1
        self._journal.append(result)
        return result

    async def _exchange(self, merchant: MerchantSpec, request: Message) -> AcquirerResult:
        terminal_id, stan, rrn = request.text(41), request.text(11), request.text(37)
        try:
            response = await self._send(request)
        except _Unreachable:
            return AcquirerResult(ResultStatus.SWITCH_UNAVAILABLE, terminal_id, stan, rrn, request)
        except (ResponseTimeout, LinkClosed):
            reversal = await self._reverse(request)
            status = (
                ResultStatus.TIMED_OUT_REVERSED
                if reversal.answered
                else ResultStatus.TIMED_OUT_REVERSAL_PENDING
            )
            return AcquirerResult(status, terminal_id, stan, rrn, request, reversal=reversal)
        approved = response.text(39) == APPROVED
        if approved and merchant.style is MessageStyle.DUAL:
            assert (terminal_id, rrn) not in self._pending, "RRN reused within the hour"
            self._pending[(terminal_id, rrn)] = _Authorized(request, response)
        status = ResultStatus.APPROVED if approved else ResultStatus.DECLINED
        return AcquirerResult(status, terminal_id, stan, rrn, request, response)

    def _merchant_of(self, terminal_id: str) -> MerchantSpec:
        try:
            merchant, _ = self._merchants.terminal(terminal_id)
        except KeyError:
            raise AcquirerError(f"no terminal {terminal_id!r}", code="terminal_unknown") from None
        return merchant

    def _check_room(self, merchant: MerchantSpec) -> None:
        """Refuses a new request that could leave a completion or a reversal with nowhere
        to be kept."""
        if len(self._reversing) + self._in_flight >= PENDING_REVERSALS_MAX:
            raise AcquirerError(
                f"{PENDING_REVERSALS_MAX} reversals or requests outstanding",
                code="reversals_backlog",
            )
        waiting = len(self._pending) + self._in_flight
        if merchant.style is MessageStyle.DUAL and waiting >= PENDING_COMPLETIONS_MAX:
            raise AcquirerError(
                f"{PENDING_COMPLETIONS_MAX} completions outstanding: upload a batch",
                code="completions_backlog",
            )

    # -- reversal --

    async def _reverse(self, original: Message) -> Reversal:
        terminal_id = original.text(41)
        stan = self._stans[terminal_id].next()
        request = reversal_request(original, stan=stan, now_ns=self._clock.now_ns())
        validate(request)
        reversing = _Reversing(request)
        self._reversing[(terminal_id, stan)] = reversing
        return await self._send_reversal(reversing, self._reversal_attempts_max)

    async def _send_reversal(self, reversing: _Reversing, attempts_max: int) -> Reversal:
        """Sends the 0400 up to `attempts_max` times, backing off between attempts; the
        same message each time, so that the switch can tell a repeat."""
        key = (reversing.request.text(41), reversing.request.text(11))
        if reversing.sending:
            return Reversal(reversing.request, None, reversing.attempts)
        reversing.sending = True
        try:
            for attempt in range(attempts_max):
                if attempt:
                    await asyncio.sleep(self._backoff_s(attempt))
                reversing.attempts += 1
                with contextlib.suppress(_Unreachable, ResponseTimeout, LinkClosed):
                    response = await self._send(reversing.request)
                    del self._reversing[key]
                    reversal = Reversal(reversing.request, response, reversing.attempts)
                    self._reversed.append(reversal)
                    return reversal
        finally:
            reversing.sending = False
        return Reversal(reversing.request, None, reversing.attempts)

    def _backoff_s(self, attempt: int) -> float:
        return float(min(self._reversal_backoff_s * 2 ** (attempt - 1), REVERSAL_BACKOFF_MAX_S))

    async def retry_reversals(self) -> int:
        """One more attempt at every unanswered 0400; how many are now answered."""
        slots = asyncio.Semaphore(BATCH_IN_FLIGHT_MAX)

        async def send(reversing: _Reversing) -> Reversal:
            async with slots:
                return await self._send_reversal(reversing, 1)

        outcomes = await asyncio.gather(*(send(r) for r in list(self._reversing.values())))
        return sum(reversal.answered for reversal in outcomes)

    # -- completion --

    async def complete(self, terminal_id: str, rrn: str, final_fen: int) -> Completion:
        """Fixes the final amount of the approved authorization `rrn` at `terminal_id` and
        sends its 0220 now. Asking again with the same amount is harmless; once the 0220
        is built its amount cannot change. Unanswered, it stays for `upload_batch`."""
        key = (terminal_id, rrn)
        authorized = self._pending.get(key)
        if authorized is None:
            return self._completed_already(key, final_fen)
        if not 0 < final_fen <= int(authorized.request.text(4)):
            raise AcquirerError(
                "the final amount must be 1 fen to the authorized amount",
                code="completion_amount_invalid",
            )
        if authorized.advice is not None and authorized.final_fen != final_fen:
            raise AcquirerError(
                f"the completion of {rrn} was sent for {authorized.final_fen} fen",
                code="completion_amount_fixed",
            )
        self._prepare_advice(authorized, final_fen)
        return await self._send_advice(key, authorized)

    def _completed_already(self, key: tuple[str, str], final_fen: int) -> Completion:
        for completion in self._completed:
            if (completion.terminal_id, completion.rrn) == key:
                if completion.final_fen != final_fen:
                    raise AcquirerError(
                        f"{key[1]} was completed for {completion.final_fen} fen",
                        code="completion_amount_fixed",
                    )
                return completion
        raise AcquirerError(
            f"no approved authorization {key[1]} awaits completion at {key[0]}",
            code="completion_unknown",
        )

    def _prepare_advice(self, authorized: _Authorized, final_fen: int) -> None:
        if authorized.advice is not None:
            return
        terminal_id = authorized.request.text(41)
        authorized.final_fen = final_fen
        authorized.advice = completion_advice(
            authorized.request,
            authorized.response,
            final_fen=final_fen,
            stan=self._stans[terminal_id].next(),
            now_ns=self._clock.now_ns(),
        )
        validate(authorized.advice)

    async def _send_advice(self, key: tuple[str, str], authorized: _Authorized) -> Completion:
        assert authorized.advice is not None
        if authorized.sending:
            return authorized.snapshot(CompletionStatus.PENDING)
        authorized.sending = True
        authorized.attempts += 1
        try:
            response = await self._send(authorized.advice)
        except (_Unreachable, ResponseTimeout, LinkClosed):
            return authorized.snapshot(CompletionStatus.PENDING)
        finally:
            authorized.sending = False
        del self._pending[key]
        completion = authorized.snapshot(CompletionStatus.COMPLETED, response)
        self._completed.append(completion)
        return completion

    async def upload_batch(self) -> BatchReport:
        """End of day: one more attempt at every unanswered reversal, then a 0220 for
        every approved authorization not yet completed (the final amount `complete` fixed,
        or the authorized amount), at most `BATCH_ADVICES_MAX`, `BATCH_IN_FLIGHT_MAX`
        at a time. Those a 0230 answers are completed and never sent again."""
        reversals_answered = await self.retry_reversals()
        batch = list(self._pending.items())[:BATCH_ADVICES_MAX]
        for _, authorized in batch:
            self._prepare_advice(
                authorized, authorized.final_fen or int(authorized.request.text(4))
            )
        slots = asyncio.Semaphore(BATCH_IN_FLIGHT_MAX)

        async def send(key: tuple[str, str], authorized: _Authorized) -> Completion:
            async with slots:
                return await self._send_advice(key, authorized)

        results = await asyncio.gather(*(send(key, a) for key, a in batch))
        return BatchReport(
            advices_sent=len(batch),
            completed=sum(c.status is CompletionStatus.COMPLETED for c in results),
            completions_pending=len(self._pending),
            reversals_answered=reversals_answered,
            reversals_pending=len(self._reversing),
        )

    # -- the link --

    async def _send(self, message: Message) -> Message:
        """The answer to `message`. `_Unreachable` when no connection could be made (it
        was not sent); `ResponseTimeout` or `LinkClosed` when it may have been."""
        client = await self._link()
        try:
            return await client.request(message, timeout_s=self._response_timeout_s)
        except LinkClosed:
            await self._drop(client)
            raise

    async def _link(self) -> Iso8583Client:
        """The open connection, or a new one. A connection the switch has closed (its
        end of stream already read) is replaced before sending, so that an idle link the
        switch hung up on costs no reversal."""
        async with self._connecting:
            if self._link_state is not None:
                client, reader, writer = self._link_state
                if not (reader.at_eof() or writer.is_closing()):
                    return client
                await self._drop(client)
            host, port = self._address
            try:
                async with asyncio.timeout(self._connect_timeout_s):
                    reader, writer = await asyncio.open_connection(host, port)
            except (OSError, TimeoutError) as exc:
                raise _Unreachable(type(exc).__name__) from None
            client = Iso8583Client(reader, writer)
            self._link_state = (client, reader, writer)
            return client

    async def _drop(self, client: Iso8583Client) -> None:
        if self._link_state is not None and self._link_state[0] is client:
            self._link_state = None
        await client.close()


def _check_outcome(outcome: KernelOutcome, amount_fen: int, pin_block: bytes | None) -> None:
    """Refuses what cannot be sent: no online request, another amount than the card
    signed (9F02 is under the ARQC), a PIN missing or not asked for."""
    card = outcome.authorization
    if outcome.kind is not OutcomeKind.ONLINE_REQUEST or card is None:
        raise AcquirerError(
            f"the tap ended {outcome.kind} ({outcome.reason}): nothing to send",
            code="outcome_not_online",
        )
    try:
        signed = tlv.primitives(tlv.decode(card.icc_data)).get("9F02")
    except TlvError:
        signed = None
    in_range = 0 < amount_fen <= AMOUNT_MINOR_MAX
    if not in_range or signed != bytes.fromhex(f"{amount_fen:012d}"):
        raise AcquirerError(
            "the amount is not the one the card signed (9F02)", code="amount_mismatch"
        )
    if (outcome.cvm is Cvm.ONLINE_PIN) != (pin_block is not None):
        raise AcquirerError(
            "a PIN block goes with an online PIN CVM, and only with it",
            code="pin_block_mismatch",
        )
