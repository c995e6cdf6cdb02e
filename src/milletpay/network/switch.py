"""The card network switch: acquirers' requests in, issuers' answers out.

`CardNetwork.handle` is the handler of the `Iso8583Server` the acquirers connect to. For
an authorization (0100, 0200) it checks the duplicate key, routes by BIN, and for a token
detokenizes it in the domain the entry mode names, checks the phone's cryptogram with
the token's limited-use keys, and forwards the card number to the issuer's host (an
`IssuerDirectory` of outbound links); the acquirer gets the token back, never the card
number, and the issuer's ARPC under the LUK. When the issuer does not answer, the switch
stands in within `StandInLimits` and owes the issuer an advice (`send_stand_in_advices`).
Completions (0220) and reversals (0400, 0420) follow the clearing record of the original;
a completion posts field 95's actual amount when it has one, else field 4.
A refund to a card (a 0200 with processing code 20) is routed and detokenized alike, but
carries no cryptogram and is never stood in for; its clearing record says it is a credit.

It never authorizes one key twice, never stands in for a token whose cryptogram failed,
and never sends a card number to an acquirer or to a log. The response codes it gives
itself are the tables below (`ROUTING_CODES`, `DETOKENIZE_CODES`, `LUK_CODES`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Protocol

from milletpay.banks.data import BankSpec, banks
from milletpay.banks.model import day_start_ns
from milletpay.cards.detokenize import DetokenizeCode, Detokenizer
from milletpay.cards.luk import LimitedUseKeys, LukCode
from milletpay.cards.tokens import Token, TokenDomain
from milletpay.core.clock import Clock
from milletpay.emv import tlv
from milletpay.emv.crypto import EmvCryptoError
from milletpay.emv.tlv import Tlv, TlvError
from milletpay.network.books import (
    Approval,
    ClearingRecord,
    ClearingStatus,
    MessageKey,
    NetworkBooks,
)
from milletpay.network.iso8583 import (
    APPROVED,
    MESSAGE_TYPES,
    RESPONSE_CODES,
    FieldValue,
    Iso8583Error,
    Message,
    StanSequence,
    amount_to_post_fen,
    original_data_elements,
    response_to,
    transmission_date_time,
)
from milletpay.network.link import CONNECT_TIMEOUT_S, Iso8583Client, LinkClosed, ResponseTimeout

__all__ = [
    "ADVICES_PER_RUN_MAX",
    "DEFAULT_STAND_IN_LIMITS",
    "DETOKENIZE_CODES",
    "ENTRY_MODE_DOMAINS",
    "ISSUER_ATTEMPTS_MAX",
    "ISSUER_TIMEOUT_S",
    "LUK_CODES",
    "NETWORK_INSTITUTION_ID",
    "REFUND_TRANSACTION_TYPE",
    "ROUTING_CODES",
    "STAND_IN_APPROVAL_PREFIX",
    "AdviceRun",
    "CardNetwork",
    "IssuerDirectory",
    "IssuerUnavailable",
    "Route",
    "StandInLimits",
    "TokenSource",
    "route",
]

log = logging.getLogger(__name__)

#: Field 33 on everything the switch forwards.
NETWORK_INSTITUTION_ID: Final = "62000000"
#: How long the switch waits for an issuer before it stands in (the acquirer's own
#: timeout, `link.RESPONSE_TIMEOUT_S`, is longer).
ISSUER_TIMEOUT_S: Final = 5.0
#: Sends of one message to an issuer: a link found closed is opened again once.
ISSUER_ATTEMPTS_MAX: Final = 2
#: Advices one `send_stand_in_advices` run sends at most.
ADVICES_PER_RUN_MAX: Final = 100
#: Tokens the switch keeps in memory (the most recently seen), for their id and number.
TOKENS_KEPT: Final = 100_000
#: A stand-in approval code: this letter, then 5 digits (an issuer's are 6 digits).
STAND_IN_APPROVAL_PREFIX: Final = "S"
CONTACTLESS_TAG_ARPC: Final = "91"  # issuer authentication data: ARPC || ARC
ISSUER_INOPERATIVE: Final = "91"  # an issuer's host answering for a bank that is down

#: Field 22's first two digits → the token domain a token must be bound to. 81 (card
#: not present) is `in_app` unless field 62 says `ecommerce`. A token keyed in or
#: swiped is used outside every domain.
ENTRY_MODE_DOMAINS: Final[Mapping[str, TokenDomain]] = MappingProxyType(
    {"07": TokenDomain.CONTACTLESS, "91": TokenDomain.CONTACTLESS, "81": TokenDomain.IN_APP}
)
CARD_NOT_PRESENT_ENTRY: Final = "81"
#: Field 3's first two digits of a refund (ISO 8583 "returns"): a credit to the card.
#: It carries no cryptogram (the cardholder is given money, not asked for it), is never
#: stood in for (only the issuer can credit the account), and a token in it must still
#: detokenize in the domain its entry mode names.
REFUND_TRANSACTION_TYPE: Final = "20"

#: The switch's own answers on routing and format.
ROUTING_CODES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "issuer_unknown": "14",  # no bank issues the IIN, card or token
        "issuer_not_connected": "92",  # a bank with no host in the directory
        "duplicate": "94",  # the key (32, 41, 11, 7) was seen before
        "issuer_unavailable": "91",  # no answer, and stand-in refused
        "format_error": "30",  # field 55 not EMV data or a tag missing; no field 90; bad 95
        "not_supported": "12",  # an MTI the switch does not carry; nothing to complete
        "amount_invalid": "13",  # a completion of zero, or above the authorization
        "cryptogram_missing": "05",  # a token payment without field 55
        "system_malfunction": "96",
    }
)
#: A token refused at detokenization → field 39.
DETOKENIZE_CODES: Final[Mapping[DetokenizeCode, str]] = MappingProxyType(
    {
        DetokenizeCode.TOKEN_UNKNOWN: "14",
        DetokenizeCode.TOKEN_NOT_ACTIVE: "62",  # inactive, suspended, deleted
        DetokenizeCode.TOKEN_EXPIRED: "54",
        DetokenizeCode.DOMAIN_MISMATCH: "57",  # e.g. an in-app token tapped at a POS
    }
)
#: A cryptogram refused by `LimitedUseKeys.verify` → field 39. 54 on a token that is
#: not past its expiry means "your keys are used up: replenish, then pay again".
LUK_CODES: Final[Mapping[LukCode, str]] = MappingProxyType(
    {
        LukCode.TOKEN_NOT_ACTIVE: "62",
        LukCode.LUK_UNKNOWN: "05",
        LukCode.ATC_OUTSIDE_WINDOW: "54",
        LukCode.LUK_RETIRED: "54",
        LukCode.LUK_EXPIRED: "54",
        LukCode.LUK_EXHAUSTED: "54",
        LukCode.ATC_REPLAYED: "05",
        LukCode.ARQC_INVALID: "05",
    }
)


@dataclass(frozen=True, slots=True)
class StandInLimits:
    """What the switch approves on an issuer's behalf when the issuer does not answer:
    at most `per_transaction_fen` a payment, and `per_card_daily_fen` a card in a China
    day (stand-in approvals not reversed)."""

    per_transaction_fen: int = 30_000
    per_card_daily_fen: int = 100_000

    def __post_init__(self) -> None:
        assert 0 <= self.per_transaction_fen <= self.per_card_daily_fen


DEFAULT_STAND_IN_LIMITS: Final = StandInLimits()


class TokenSource(Protocol):
    """Where the switch reads a token (`cards.TokenService` is one)."""

    def token(self, token_id: int) -> Token: ...


class IssuerUnavailable(Exception):
    """The issuer's host did not answer: no link, a closed link twice, or a timeout."""


@dataclass(frozen=True, slots=True)
class Route:
    bank_code: str
    token: bool  # the number is a token of the bank's token range


def route(pan: str, specs: tuple[BankSpec, ...]) -> Route | None:
    """The bank behind a card number (its IIN ranges) or a token (its token range)."""
    iin = pan[:6]
    for spec in specs:
        if spec.issues_iin(iin):
            return Route(spec.code, token=False)
        if iin in spec.token_iin_range:
            return Route(spec.code, token=True)
    return None


@dataclass(frozen=True, slots=True)
class AdviceRun:
    delivered: int
    pending: int  # left for the next run (an issuer still down)


class IssuerDirectory:
    """Bank code → the (host, port) of its issuer host; one outbound link per bank,
    opened on first use and again once it is found closed."""

    def __init__(
        self,
        addresses: Mapping[str, tuple[str, int]],
        *,
        timeout_s: float = ISSUER_TIMEOUT_S,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
    ) -> None:
        assert timeout_s > 0 and connect_timeout_s > 0
        self._addresses = dict(addresses)
        self._timeout_s = timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._clients: dict[str, Iso8583Client] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def knows(self, bank_code: str) -> bool:
        return bank_code in self._addresses

    def set_address(self, bank_code: str, host: str, port: int) -> None:
        """A bank's host moved: the next request connects to the new address."""
        self._addresses[bank_code] = (host, port)

    async def request(self, bank_code: str, message: Message) -> Message:
        """The issuer's answer; `IssuerUnavailable` when none comes."""
        for _ in range(ISSUER_ATTEMPTS_MAX):
            client = await self._client(bank_code)
            try:
                return await client.request(message, timeout_s=self._timeout_s)
            except LinkClosed:
                await self._drop(bank_code, client)
            except ResponseTimeout as exc:
                raise IssuerUnavailable(f"{bank_code}: {exc}") from None
            except Iso8583Error as exc:  # the same key already waiting on this link
                raise IssuerUnavailable(f"{bank_code}: {exc}") from None
        raise IssuerUnavailable(f"{bank_code}: the link closed {ISSUER_ATTEMPTS_MAX} times")

    async def _client(self, bank_code: str) -> Iso8583Client:
        lock = self._locks.setdefault(bank_code, asyncio.Lock())
        async with lock:
            client = self._clients.get(bank_code)
            if client is not None:
                return client
            address = self._addresses.get(bank_code)
            if address is None:
                raise IssuerUnavailable(f"{bank_code}: no host in the directory")
            host, port = address
            try:
                client = await Iso8583Client.connect(host, port, timeout_s=self._connect_timeout_s)
            except (OSError, TimeoutError) as exc:
                raise IssuerUnavailable(f"{bank_code}: no link ({type(exc).__name__})") from None
            self._clients[bank_code] = client
            return client

    async def _drop(self, bank_code: str, client: Iso8583Client) -> None:
        if self._clients.get(bank_code) is client:
            del self._clients[bank_code]
        await client.close()

    async def close(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.close()


@dataclass(frozen=True, slots=True)
class _Card:
    """The card a request is for, once routed (and detokenized)."""

    bank_code: str
    pan: str
    token_number: str | None = None
    token: Token | None = None
    expiry_yymm: str | None = None
    icc: Mapping[str, bytes] | None = None


class _Decline(Exception):
    def __init__(self, code: str, why: str) -> None:
        super().__init__(why)
        self.code = code


class CardNetwork:
    """The switch. `handle` is an `Iso8583Server` handler; thread-safe books, one
    asyncio event loop."""

    def __init__(
        self,
        books: NetworkBooks,
        directory: IssuerDirectory,
        detokenizer: Detokenizer,
        luks: LimitedUseKeys,
        tokens: TokenSource,
        clock: Clock,
        *,
        specs: tuple[BankSpec, ...] | None = None,
        stand_in: StandInLimits = DEFAULT_STAND_IN_LIMITS,
        institution_id: str = NETWORK_INSTITUTION_ID,
    ) -> None:
        self._books = books
        self._directory = directory
        self._detokenizer = detokenizer
        self._luks = luks
        self._tokens = tokens
        self._clock = clock
        self._specs = specs if specs is not None else banks()
        self._stand_in = stand_in
        self._institution_id = institution_id
        self._stans = StanSequence()
        self._tokens_seen: OrderedDict[int, Token] = OrderedDict()
        self._tokens_lock = threading.Lock()
        # Stand-in decisions of one switch are taken one at a time, so that two taps
        # of one card cannot both fit under its daily limit.
        self._stand_in_lock = asyncio.Lock()
        self._advice_lock = asyncio.Lock()
        self._operations: Mapping[str, Callable[[Message], Awaitable[Message]]] = {
            "0100": self._authorize,
            "0200": self._authorize,
            "0220": self._complete,
            "0400": self._reverse,
            "0420": self._reverse,
        }

    @property
    def books(self) -> NetworkBooks:
        return self._books

    async def close(self) -> None:
        await self._directory.close()

    async def handle(self, message: Message) -> Message:
        """The answer to an acquirer's request; never raises."""
        operation = self._operations.get(message.mti)
        try:
            if operation is None:
                return response_to(message, ROUTING_CODES["not_supported"])
            return await operation(message)
        except _Decline as decline:
            log.info("%s declined %s: %s", message.mti, decline.code, decline)
            return response_to(message, decline.code)
        except Exception:
            log.exception("switch failed on %s", message.mti)  # the type only: no card data
            return response_to(message, ROUTING_CODES["system_malfunction"])

    # -- authorization -----------------------------------------------------------------

    async def _authorize(self, message: Message) -> Message:
        # The reads and the cryptogram's check run on the loop (each a statement or two on
        # the local database, under a millisecond); every write is awaited, and shares
        # its committer's transaction with the writes of other taps.
        if not await self._books.claim_async(MessageKey.of(message), message.mti):
            return response_to(message, ROUTING_CODES["duplicate"])
        card = await self._card(message)
        forwarded = self._forwarded(message, card)
        try:
            answer = await self._directory.request(card.bank_code, forwarded)
        except IssuerUnavailable as exc:
            log.warning("issuer unavailable: %s", exc)
            answer = None
        if answer is None or answer.fields.get(39) == ISSUER_INOPERATIVE:
            return await self._stand_in_or_decline(message, forwarded, card)
        code = _relayed_code(answer)
        approval = answer.fields.get(38) if code == APPROVED else None
        assert approval is None or isinstance(approval, str)
        if approval is not None:  # the clearing record, then the acquirer's answer
            await self._books.record_approval_async(self._approval(message, card, approval, False))
        return self._answer(message, card, code, approval)

    async def _card(self, message: Message) -> _Card:
        """Route the number in field 2; for a token, detokenize it and check its
        cryptogram. A `_Decline` for anything that must not reach the issuer."""
        number = message.text(2)
        found = route(number, self._specs)
        if found is None:
            raise _Decline(ROUTING_CODES["issuer_unknown"], "no bank issues the IIN")
        if not self._directory.knows(found.bank_code):
            raise _Decline(ROUTING_CODES["issuer_not_connected"], f"no host for {found.bank_code}")
        if not found.token:
            return _Card(found.bank_code, number)
        return await self._token_card(message, number)

    async def _token_card(self, message: Message, number: str) -> _Card:
        domain = token_domain(message)
        if domain is None:
            raise _Decline(DETOKENIZE_CODES[DetokenizeCode.DOMAIN_MISMATCH], "entry mode")
        device = message.fields.get(61)
        device_id = device if isinstance(device, str) else None
        found = self._detokenizer.detokenize(number, domain, device_id)
        if not found.ok:
            raise _Decline(DETOKENIZE_CODES[found.code], found.code.value)
        assert found.pan is not None and found.expiry is not None
        expiry = f"{found.expiry.year % 100:02d}{found.expiry.month:02d}"
        if is_refund(message):  # a credit: no cryptogram to check, no ARPC to give
            return _Card(found.bank_code, found.pan.clear_digits(), number, None, expiry)
        icc = _icc_data(message)
        token = self._token(found.token_id)
        try:
            verdict = await self._luks.verify_async(token, icc["9F26"], icc)
        except EmvCryptoError as exc:
            raise _Decline(ROUTING_CODES["format_error"], str(exc)) from None
        if not verdict.ok:
            raise _Decline(LUK_CODES[verdict.code], verdict.code.value)
        return _Card(found.bank_code, found.pan.clear_digits(), number, token, expiry, icc)

    def _token(self, token_id: int) -> Token:
        """The token, for its id and number only, which never change: its state is
        what the detokenizer and the LUK check read from the token service each time.
        Kept for the last `TOKENS_KEPT` tokens seen."""
        with self._tokens_lock:
            token = self._tokens_seen.get(token_id)
        if token is None:
            token = self._tokens.token(token_id)
            with self._tokens_lock:
                self._tokens_seen[token_id] = token
                while len(self._tokens_seen) > TOKENS_KEPT:
                    self._tokens_seen.popitem(last=False)
        return token

    def _forwarded(self, message: Message, card: _Card) -> Message:
        """The request as the issuer gets it: the card number in 2, the token in 63."""
        changes: dict[int, FieldValue | None] = {33: self._institution_id, 2: card.pan}
        if card.token_number is not None:
            assert card.expiry_yymm is not None
            changes |= {63: card.token_number, 14: card.expiry_yymm}
        return message.with_fields(changes)

    def _answer(self, message: Message, card: _Card, code: str, approval: str | None) -> Message:
        """The acquirer's answer, built from its own request (so its field 2 is what it
        sent: the token), with the approval code and, for a token, the ARPC (under the
        LUK its verification kept)."""
        extra: dict[int, FieldValue] = {} if approval is None else {38: approval}
        if card.token is not None and card.icc is not None:
            arc = code.encode("ascii")
            arpc = self._luks.arpc(card.token, card.icc, card.icc["9F26"], arc)
            extra[55] = tlv.encode([Tlv(CONTACTLESS_TAG_ARPC, arpc + arc)])
        return response_to(message, code, extra)

    def _approval(
        self, message: Message, card: _Card, approval_code: str, stand_in: bool
    ) -> Approval:
        return Approval(
            key=MessageKey.of(message),
            rrn=message.text(37),
            mti=message.mti,
            pan=card.pan,
            token_number=card.token_number,
            bank_code=card.bank_code,
            amount_fen=int(message.text(4)),
            currency=message.text(49),
            approval_code=approval_code,
            stand_in=stand_in,
            processing_code=message.text(3),
        )

    # -- stand-in ----------------------------------------------------------------------

    async def _stand_in_or_decline(
        self, message: Message, forwarded: Message, card: _Card
    ) -> Message:
        """The issuer did not answer. Within the limits: approve, and owe the issuer the
        advice (0120, and 0220 for a 0200). Otherwise 91, and owe the issuer a 0420 in
        case it did place a hold it could not tell of."""
        amount_fen = int(message.text(4))
        async with self._stand_in_lock:
            allowed = await asyncio.to_thread(self._stand_in_allowed, message, card.pan, amount_fen)
            if not allowed:
                reversal = self._advice(forwarded, "0420", {90: original_data_elements(forwarded)})
                await asyncio.to_thread(self._books.queue_advice, card.bank_code, reversal, None)
                return response_to(message, ROUTING_CODES["issuer_unavailable"])
            approval = stand_in_approval_code(MessageKey.of(message))
            advices = [self._advice(forwarded, "0120", {39: APPROVED, 38: approval}, same_key=True)]
            if message.mti == "0200":
                advices.append(
                    self._advice(
                        forwarded,
                        "0220",
                        {39: APPROVED, 38: approval, 90: original_data_elements(forwarded)},
                    )
                )
            await asyncio.to_thread(
                self._books.record_approval,
                self._approval(message, card, approval, True),
                tuple(advices),
            )
        log.info("stood in for %s: approved %d fen", card.bank_code, amount_fen)
        return self._answer(message, card, APPROVED, approval)

    def _stand_in_allowed(self, message: Message, pan: str, amount_fen: int) -> bool:
        if is_refund(message) or amount_fen > self._stand_in.per_transaction_fen:
            return False
        spent_fen = self._books.stand_in_spent_fen(pan, day_start_ns(self._clock))
        return spent_fen + amount_fen <= self._stand_in.per_card_daily_fen

    def _advice(
        self,
        original: Message,
        mti: str,
        extra: Mapping[int, FieldValue],
        *,
        same_key: bool = False,
    ) -> Message:
        """An advice of `original` to the issuer: its fields the MTI carries, then
        `extra`. A 0120 keeps the original's STAN and time (the issuer keys the hold on
        them); a completion or reversal gets the switch's own, naming the original in 90."""
        allowed = MESSAGE_TYPES[mti].must | MESSAGE_TYPES[mti].may
        fields = {n: v for n, v in original.fields.items() if n in allowed}
        if not same_key:
            fields |= {11: self._stans.next(), 7: transmission_date_time(self._clock.now_ns())}
        return Message(mti, fields | dict(extra))

    async def send_stand_in_advices(self) -> AdviceRun:
        """Send the advices owed to issuers, oldest first, at most `ADVICES_PER_RUN_MAX`;
        a bank that still does not take one keeps it and the ones after it (in order)."""
        async with self._advice_lock:  # one run at a time: each advice sent once a run
            return await self._send_advices()

    async def _send_advices(self) -> AdviceRun:
        pending = await asyncio.to_thread(self._books.pending_advices, ADVICES_PER_RUN_MAX)
        stalled: set[str] = set()
        delivered = 0
        for advice in pending:
            if advice.bank_code in stalled:
                continue
            try:
                answer = await self._directory.request(advice.bank_code, advice.message)
            except IssuerUnavailable as exc:
                log.info("advice not delivered: %s", exc)
                answer = None
            taken = answer is not None and answer.fields.get(39) == APPROVED
            if not taken:
                stalled.add(advice.bank_code)
            else:
                delivered += 1
            await asyncio.to_thread(self._books.advice_attempted, advice.id, delivered=taken)
        return AdviceRun(delivered, len(pending) - delivered)

    # -- completion and reversal -------------------------------------------------------

    async def _original(self, message: Message) -> tuple[ClearingRecord | None, MessageKey]:
        if 90 not in message.fields:  # may in a 0220, must in a reversal
            raise _Decline(ROUTING_CODES["format_error"], "no field 90 to find the original")
        key = MessageKey.original_of(message)
        return await asyncio.to_thread(self._books.record, key), key

    async def _record_card(self, message: Message, record: ClearingRecord) -> _Card:
        pan = await asyncio.to_thread(self._books.pan_of, record)
        return _Card(record.bank_code, pan, record.token_number)

    def _forwarded_by_record(self, message: Message, card: _Card) -> Message:
        changes: dict[int, FieldValue | None] = {33: self._institution_id, 2: card.pan}
        if card.token_number is not None:
            changes[63] = card.token_number
        return message.with_fields(changes)

    async def _complete(self, message: Message) -> Message:
        record, _ = await self._original(message)
        if record is None or record.status is ClearingStatus.REVERSED:
            return response_to(message, ROUTING_CODES["not_supported"])
        if record.status is ClearingStatus.COMPLETED:
            return response_to(message, APPROVED)  # told before
        try:
            amount_fen = amount_to_post_fen(message)  # field 95's actual amount, else 4
        except Iso8583Error as exc:
            raise _Decline(ROUTING_CODES["format_error"], str(exc)) from None
        if not 0 < amount_fen <= record.amount_fen:
            return response_to(message, ROUTING_CODES["amount_invalid"])
        forwarded = self._forwarded_by_record(message, await self._record_card(message, record))
        code = await self._tell_issuer(record, forwarded, ClearingStatus.COMPLETED, amount_fen)
        return response_to(message, code)

    async def _reverse(self, message: Message) -> Message:
        record, _ = await self._original(message)
        if record is None:
            return await self._reverse_unrecorded(message)
        if record.status is ClearingStatus.REVERSED:
            return response_to(message, APPROVED)  # told before
        forwarded = self._forwarded_by_record(message, await self._record_card(message, record))
        code = await self._tell_issuer(record, forwarded, ClearingStatus.REVERSED, 0)
        return response_to(message, code)

    async def _tell_issuer(
        self, record: ClearingRecord, forwarded: Message, status: ClearingStatus, amount_fen: int
    ) -> str:
        """Forward a completion or reversal; an issuer that does not answer gets it as a
        stored advice later, and the acquirer's advice is taken (00) now."""
        try:
            answer = await self._directory.request(record.bank_code, forwarded)
        except IssuerUnavailable as exc:
            log.warning("issuer unavailable, advice stored: %s", exc)
            advice = forwarded if forwarded.mti != "0400" else Message("0420", forwarded.fields)
            await asyncio.to_thread(self._books.resolve, record, status, amount_fen, advice)
            return APPROVED
        code = _relayed_code(answer)
        if code == APPROVED:
            await asyncio.to_thread(self._books.resolve, record, status, amount_fen)
        return code

    async def _reverse_unrecorded(self, message: Message) -> Message:
        """A reversal of nothing the network approved. Still forwarded when the card can
        be routed: the issuer records it, and declines the authorization should it come
        late. A token that no longer detokenizes has nothing to reverse."""
        number = message.text(2)
        found = route(number, self._specs)
        pan: str | None = number if found is not None and not found.token else None
        if found is not None and found.token:
            pan = await asyncio.to_thread(self._pan_of_token, number)
        if found is None or pan is None or not self._directory.knows(found.bank_code):
            return response_to(message, APPROVED)
        card = _Card(found.bank_code, pan, number if found.token else None)
        forwarded = self._forwarded_by_record(message, card)
        try:
            answer = await self._directory.request(found.bank_code, forwarded)
        except IssuerUnavailable:
            advice = forwarded if forwarded.mti != "0400" else Message("0420", forwarded.fields)
            await asyncio.to_thread(self._books.queue_advice, found.bank_code, advice, None)
            return response_to(message, APPROVED)
        return response_to(message, _relayed_code(answer))

    def _pan_of_token(self, number: str) -> str | None:
        for domain in TokenDomain:
            found = self._detokenizer.detokenize(number, domain)
            if found.ok:
                assert found.pan is not None
                return found.pan.clear_digits()
        return None


def token_domain(message: Message) -> TokenDomain | None:
    """The domain a token used in `message` must be bound to (`ENTRY_MODE_DOMAINS`,
    field 62 for card-not-present); None if the entry mode is no token's."""
    entry = message.fields.get(22)
    mode = entry[:2] if isinstance(entry, str) else ""
    domain = ENTRY_MODE_DOMAINS.get(mode)
    stated = message.fields.get(62)
    if domain is None or stated is None:
        return domain
    if mode == CARD_NOT_PRESENT_ENTRY and stated in (TokenDomain.IN_APP, TokenDomain.ECOMMERCE):
        return TokenDomain(stated)
    return domain if stated == domain else None


def is_refund(message: Message) -> bool:
    """Whether `message` is a refund (field 3's transaction type 20)."""
    processing = message.fields.get(3)
    return isinstance(processing, str) and processing[:2] == REFUND_TRANSACTION_TYPE


def stand_in_approval_code(key: MessageKey) -> str:
    """`S` and 5 digits from the key: never an issuer's code, the same for the same key."""
    digest = hashlib.sha256(
        "|".join((key.acquirer, key.terminal, key.stan, key.transmitted)).encode()
    ).digest()
    return f"{STAND_IN_APPROVAL_PREFIX}{int.from_bytes(digest[:8], 'big') % 100_000:05d}"


def _icc_data(message: Message) -> dict[str, bytes]:
    data = message.fields.get(55)
    if not isinstance(data, bytes):
        raise _Decline(ROUTING_CODES["cryptogram_missing"], "no field 55")
    try:
        icc = tlv.primitives(tlv.decode(data))
    except TlvError as exc:
        raise _Decline(ROUTING_CODES["format_error"], f"field 55: {exc}") from None
    if "9F26" not in icc:
        raise _Decline(ROUTING_CODES["format_error"], "field 55 has no ARQC (9F26)")
    return icc


def _relayed_code(answer: Message) -> str:
    """The issuer's field 39, if it is a code the network carries; else 05."""
    code = answer.fields.get(39)
    return code if isinstance(code, str) and code in RESPONSE_CODES else "05"
