"""The issuer host: a bank's authorization service behind an ISO 8583 server.

`issuer_handler(bank)` is the handler an `Iso8583Server` runs for one bank: the card
network's switch connects to it and sends

| request | the bank does | answer |
|---|---|---|
| 0100 authorization | `authorize` (a hold) | 0110 |
| 0120 authorization advice (the switch stood in) | `authorize` (the hold, if funds allow) | 0130 |
| 0200 financial request | `authorize` and post the approval, in one transaction | 0210 |
| 0200 with processing code 20 (refund) | `refund`: a credit to the card's account | 0210 |
| 0220 completion advice | `complete` the hold for field 95's actual amount, else field 4 | 0230 |
| 0400 / 0420 reversal | `reverse` the hold | 0410 / 0430 |

The bank keys each authorization on `authorization_reference`: the acquirer (32), the
terminal (41), the STAN (11) and the transmission date and time (7) of the request, or,
for a completion or reversal, of the original named in field 90. A repeated request is
answered from the bank's own record, never held twice. The database work runs in a
worker thread. A message the bank cannot use is answered 30 (or 12, 13, 96 as
`HOST_CODES` says), never an exception out of the handler; the PAN is never logged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import Final
from urllib.parse import quote

from milletpay.banks.authorization import (
    AuthorizationAnswer,
    AuthorizationRequest,
    Channel,
    HoldAnswer,
)
from milletpay.banks.bank import Bank
from milletpay.banks.errors import BankInputError
from milletpay.banks.responses import ResponseCode
from milletpay.core.money import CURRENCIES
from milletpay.network.iso8583 import Iso8583Error, Message, amount_to_post_fen, response_to

__all__ = [
    "ENTRY_MODE_CHANNELS",
    "HOLD_CODES",
    "HOST_CODES",
    "Handler",
    "HostRefusal",
    "authorization_reference",
    "issuer_handler",
    "original_reference",
]

log = logging.getLogger(__name__)

Handler = Callable[[Message], Awaitable[Message]]

PURCHASE: Final = "000000"  # field 3: the one processing code the bank authorizes
REFUND: Final = "200000"  # field 3: returns (a refund to the card), default accounts
#: Field 22's first two digits → how the bank authorizes. A tap or a token payment
#: carries a cryptogram the network has checked (`Channel.CONTACTLESS`). Key entry and
#: the magnetic stripe need a CVN2 or a clear PIN, which the network does not carry.
ENTRY_MODE_CHANNELS: Final[Mapping[str, Channel]] = MappingProxyType(
    {"05": Channel.CONTACTLESS, "07": Channel.CONTACTLESS, "91": Channel.CONTACTLESS}
)
#: Card-not-present with a token (field 63): the network has checked its cryptogram.
TOKEN_ENTRY_MODES: Final = frozenset({"81"})
#: ISO 4217 numeric (field 49) → the alphabetic code the bank knows.
CURRENCY_BY_NUMERIC: Final[Mapping[str, str]] = MappingProxyType(
    {f"{numeric:03d}": code for code, (numeric, _) in CURRENCIES.items() if numeric}
)
#: Field 90: original MTI (4), STAN (6), transmission date and time (10), acquirer (11).
_ORIGINAL_STAN = slice(4, 10)
_ORIGINAL_TRANSMITTED = slice(10, 20)
_ORIGINAL_ACQUIRER = slice(20, 31)


class HostRefusal(Exception):
    """A message the bank cannot act on; `code` is the answer's field 39."""

    def __init__(self, code: str, why: str) -> None:
        super().__init__(why)
        self.code = code


#: What the host answers, itself, for a message it cannot act on.
HOST_CODES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "format_error": "30",  # a field missing, malformed, or one the bank cannot use
        "processing_code_not_supported": "12",  # field 3 other than purchase (or refund)
        "amount_invalid": "13",  # zero, or more than the bank's books take
        "unexpected": "96",  # anything else inside the host (logged, no card data)
    }
)
#: A completion's or reversal's `HoldAnswer.status` when nothing was done → field 39.
HOLD_CODES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "authorization_unknown": "12",  # completion of an authorization never seen
        "amount_exceeds_authorization": "13",
        "declined": "12",  # the original was declined: nothing to complete
        "reversed": "12",  # completing a reversed authorization
        "completed": "12",  # completing again what another completion finished
        "expired": "12",  # the hold lapsed
        "refund_spent": "12",  # reversing a refund the cardholder has spent since
    }
)


def _field(message: Message, number: int) -> str:
    value = message.fields.get(number)
    if not isinstance(value, str):
        raise HostRefusal(HOST_CODES["format_error"], f"field {number} is missing")
    return value


def _reference(acquirer: str, terminal: str, stan: str, transmitted: str) -> str:
    # The terminal id is space-padded free text: quoted, so the reference is visible
    # ASCII and no two terminals give one reference.
    return f"{acquirer}/{quote(terminal, safe='')}/{stan}/{transmitted}"


def authorization_reference(message: Message) -> str:
    """The bank's reference for an authorization request: acquirer (32), terminal (41),
    STAN (11), transmission date and time (7), at most 54 visible characters."""
    return _reference(
        _field(message, 32), _field(message, 41), _field(message, 11), _field(message, 7)
    )


def original_reference(message: Message) -> str:
    """For a completion or reversal: the `authorization_reference` of the original
    request its field 90 names (same acquirer and terminal, its STAN and field 7)."""
    original = _field(message, 90)
    acquirer = _field(message, 32)
    if original[_ORIGINAL_ACQUIRER] != acquirer.zfill(11):
        raise HostRefusal(HOST_CODES["format_error"], "field 90 names another acquirer")
    return _reference(
        acquirer,
        _field(message, 41),
        original[_ORIGINAL_STAN],
        original[_ORIGINAL_TRANSMITTED],
    )


def _amount_fen(message: Message) -> int:
    amount = int(_field(message, 4))
    if amount <= 0:
        raise HostRefusal(HOST_CODES["amount_invalid"], "amount is zero")
    return amount


def _channel(message: Message) -> Channel:
    if 52 in message.fields:
        raise HostRefusal(HOST_CODES["format_error"], "field 52: the bank holds no zone PIN key")
    mode = _field(message, 22)[:2]
    channel = ENTRY_MODE_CHANNELS.get(mode)
    if channel is None and mode in TOKEN_ENTRY_MODES and 63 in message.fields:
        channel = Channel.CONTACTLESS
    if channel is None:
        raise HostRefusal(HOST_CODES["format_error"], f"field 22: entry mode {mode} not taken")
    return channel


def _authorization_request(message: Message, processing: str = PURCHASE) -> AuthorizationRequest:
    if _field(message, 3) != processing:
        raise HostRefusal(HOST_CODES["processing_code_not_supported"], "field 3")
    expiry = message.fields.get(14)
    return AuthorizationRequest(
        reference=authorization_reference(message),
        pan=_field(message, 2),
        amount_fen=_amount_fen(message),
        channel=_channel(message),
        currency=CURRENCY_BY_NUMERIC.get(_field(message, 49), "XXX"),
        expiry_yymm=expiry if isinstance(expiry, str) else None,
        merchant_category=_field(message, 18),
    )


def _authorization_answer(request: Message, answer: AuthorizationAnswer) -> Message:
    extra = {38: answer.approval_code} if answer.approval_code else {}
    return response_to(request, answer.response_code.value, extra)


def _hold_answer(request: Message, answer: HoldAnswer) -> Message:
    code = ResponseCode.APPROVED.value if answer.ok else HOLD_CODES.get(answer.status, "12")
    return response_to(request, code)


def _authorize(bank: Bank, message: Message) -> Message:
    return _authorization_answer(message, bank.authorize(_authorization_request(message)))


def _advise(bank: Bank, message: Message) -> Message:
    """The switch approved on the bank's behalf: the bank places the hold if it can. The
    advice is acknowledged (00) once the bank has decided, whatever it decided; 91 and
    96 (nothing recorded) ask the switch to send it again."""
    answer = bank.authorize(_authorization_request(message))
    if answer.response_code in (ResponseCode.ISSUER_INOPERATIVE, ResponseCode.SYSTEM_MALFUNCTION):
        return response_to(message, answer.response_code.value)
    if not answer.approved:
        log.warning("%s: stand-in advice declined in the books: %s", bank.code, answer.reason)
    return response_to(message, ResponseCode.APPROVED.value)


def _purchase(bank: Bank, message: Message) -> Message:
    """Single message: authorize and post what was approved, in one transaction."""
    return _authorization_answer(
        message, bank.authorize(_authorization_request(message), post=True)
    )


def _refund(bank: Bank, message: Message) -> Message:
    """A merchant's refund to the card: credited at once (a single message)."""
    request = _authorization_request(message, REFUND)
    return _authorization_answer(message, bank.refund(request))


#: Field 3 of a 0200 → what the bank does with it.
_FINANCIAL: Final[Mapping[str, Callable[[Bank, Message], Message]]] = MappingProxyType(
    {PURCHASE: _purchase, REFUND: _refund}
)


def _financial(bank: Bank, message: Message) -> Message:
    operation = _FINANCIAL.get(_field(message, 3))
    if operation is None:
        raise HostRefusal(HOST_CODES["processing_code_not_supported"], "field 3")
    return operation(bank, message)


def _complete(bank: Bank, message: Message) -> Message:
    """Post the hold for the actual amount of field 95 when there is one, else field 4
    (`amount_to_post_fen`): a POS keeps field 4 the authorized amount."""
    try:
        amount_fen = amount_to_post_fen(message)
    except Iso8583Error as exc:
        raise HostRefusal(HOST_CODES["format_error"], str(exc)) from None
    if amount_fen <= 0:
        raise HostRefusal(HOST_CODES["amount_invalid"], "amount is zero")
    answer = bank.complete(original_reference(message), amount_fen)
    return _hold_answer(message, answer)


def _reverse(bank: Bank, message: Message) -> Message:
    return _hold_answer(message, bank.reverse(original_reference(message)))


#: Request MTI → what the bank does with it (blocking; run in a worker thread).
_OPERATIONS: Final[Mapping[str, Callable[[Bank, Message], Message]]] = MappingProxyType(
    {
        "0100": _authorize,
        "0120": _advise,
        "0200": _financial,
        "0220": _complete,
        "0400": _reverse,
        "0420": _reverse,
    }
)


def _answer(bank: Bank, message: Message) -> Message:
    operation = _OPERATIONS.get(message.mti)
    if operation is None:
        return response_to(message, "12")
    try:
        return operation(bank, message)
    except HostRefusal as refusal:
        log.info("%s: %s refused: %s", bank.code, message.mti, refusal)
        return response_to(message, refusal.code)
    except BankInputError as exc:
        log.info("%s: %s refused: %s", bank.code, message.mti, exc.code)
        return response_to(message, HOST_CODES["format_error"])
    except Exception:
        # Never the message in the log: it carries the PAN.
        log.exception("%s: %s failed", bank.code, message.mti)
        return response_to(message, HOST_CODES["unexpected"])


def issuer_handler(bank: Bank) -> Handler:
    """The `Iso8583Server` handler of `bank`'s host."""

    async def handle(message: Message) -> Message:
        return await asyncio.to_thread(_answer, bank, message)

    return handle
