"""The POS terminal's contactless kernel, qPBOC style (the cryptogram comes in the GPO
answer), and the in-process "NFC field" it talks to a phone through.

One tap: reader limits (pre-processing), SELECT PPSE, application selection by priority
among the terminal's AIDs, SELECT AID, GET PROCESSING OPTIONS with the PDOL the card asked
for, READ RECORD of every record the AFL names, cardholder verification, and the outcome:
an online request carrying field 55, or why not. The kernel decides nothing about money:
the acquirer host sends the online request on. It never raises on what a card answers,
and a field lost mid-tap ends the tap cleanly (`OutcomeKind.END_APPLICATION`,
`field_lost`); every APDU exchanged is in the outcome's transcript.

The terminal verification results (95) are fixed when GPO is sent: the ARQC covers them,
so the online request carries the TVR the card saw. What happens after (the CVM) is told
by the CVM results (9F34); a decline after GPO reports its TVR in the outcome only.
"""

from __future__ import annotations

import datetime
import random
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType, TracebackType
from typing import Final, Protocol

from milletpay.core.errors import MilletError
from milletpay.emv import apdu, tags, tlv
from milletpay.emv.apdu import ApduError, ResponseApdu, StatusWord
from milletpay.emv.tags import Format
from milletpay.emv.tlv import Tlv, TlvError

AMOUNT_MINOR_MAX: Final = 999_999_999_999  # n12
CANDIDATES_MAX: Final = 16  # applications taken from one PPSE answer
DOL_ENTRIES_MAX: Final = 32
#: GPO data is 83, a length (81 xx above 127) and the PDOL data: a short APDU's Lc of 255.
PDOL_DATA_BYTES_MAX: Final = apdu.LC_MAX - 3
RECORDS_MAX: Final = 16  # records read in one tap
EXCHANGES_MAX: Final = 2 + CANDIDATES_MAX + RECORDS_MAX  # PPSE, SELECTs, GPO, records

UNIONPAY_AIDS: Final = (
    bytes.fromhex("A000000333010101"),  # debit
    bytes.fromhex("A000000333010102"),  # credit
    bytes.fromhex("A000000333010103"),  # quasi-credit
)

# Terminal transaction qualifiers (9F66) and card transaction qualifiers (9F6C), EMV
# Book C-3: (byte, bit mask).
TTQ_SIGNATURE = (0, 0x02)
TTQ_ONLINE_PIN = (0, 0x04)
TTQ_CVM_REQUIRED = (1, 0x40)
TTQ_ONLINE_CRYPTOGRAM_REQUIRED = (1, 0x80)
TTQ_CDCVM = (2, 0x40)
CTQ_ONLINE_PIN = (0, 0x80)
CTQ_SIGNATURE = (0, 0x40)
CTQ_CDCVM_PERFORMED = (1, 0x80)

# Terminal verification results (95), EMV Book 3 Annex C5: (byte, bit mask).
TVR_ODA_NOT_PERFORMED = (0, 0x80)
TVR_CVM_NOT_SUCCESSFUL = (2, 0x80)
TVR_EXCEEDS_FLOOR_LIMIT = (3, 0x80)

CID_TYPE_MASK: Final = 0xC0
CID_AAC: Final = 0x00
CID_ARQC: Final = 0x80

#: The card data an online request cannot go without.
CARD_TAGS_REQUIRED: Final = ("82", "94", "9F36", "9F10", "9F26", "9F27", "57", "5F24")
#: Field 55 (ICC data), in this order; tags the tap did not produce are left out.
FIELD_55_TAGS: Final = (
    "9F26", "9F27", "9F10", "9F37", "9F36", "95", "9A", "9C", "9F02", "5F2A", "82",
    "9F1A", "9F03", "9F33", "9F34", "9F35", "84", "9F09", "9F66", "9F6C", "9F6E", "5F34",
)  # fmt: skip


class FieldLost(MilletError):
    """The phone left the field: the command had no answer."""

    code = "nfc_field_lost"


class TerminalConfigError(MilletError):
    code = "terminal_config_invalid"


class TransactionInvalid(MilletError):
    """A transaction the kernel cannot put in a GPO: nothing was sent."""

    code = "transaction_invalid"


class Transport(Protocol):
    """How the kernel reaches a card: one command APDU out, one response APDU back, or
    `FieldLost`."""

    def transceive(self, command: bytes) -> bytes: ...


class ContactlessCard(Protocol):
    """What sits on the other side of the field: the phone's applet."""

    def process(self, command: bytes) -> bytes: ...

    def deactivate(self) -> None: ...


class NfcField:
    """An in-process NFC field between a terminal and a card. `tear_after_exchanges`
    pulls the phone away once that many exchanges are done: the next command never
    reaches the card. Leaving the field (`tear`, or the end of a `with` block) tells the
    card, as a phone's HCE service is told when the reader goes."""

    def __init__(self, card: ContactlessCard, *, tear_after_exchanges: int | None = None) -> None:
        assert tear_after_exchanges is None or tear_after_exchanges >= 0
        self._card = card
        self._tear_after = tear_after_exchanges
        self._exchanges = 0
        self._present = True

    def transceive(self, command: bytes) -> bytes:
        if self._present and self._exchanges == self._tear_after:
            self.tear()
        if not self._present:
            raise FieldLost("the phone left the field")
        self._exchanges += 1
        return self._card.process(command)

    def tear(self) -> None:
        if self._present:
            self._present = False
            self._card.deactivate()

    def __enter__(self) -> NfcField:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.tear()


def _hex(text: str) -> bytes:
    return bytes.fromhex(text)


@dataclass(frozen=True, slots=True)
class TerminalConfig:
    """One terminal's contactless parameters. Amounts in minor units (fen) of
    `currency`; a limit is passed when the amount is above it (QuickPass: up to and
    including the CVM limit a tap needs no PIN and no signature)."""

    contactless_limit_minor: int  # above: try another interface
    cvm_limit_minor: int  # above: a CVM is required
    floor_limit_minor: int = 0  # above: TVR "exceeds floor limit"; this reader is online-only
    #: qPBOC, online PIN, signature, consumer device CVM supported (REFERENCES.md's default
    #: A6000000, with byte 3 b7).
    ttq: bytes = _hex("A6004000")
    supported_aids: tuple[bytes, ...] = UNIONPAY_AIDS
    country: bytes = _hex("0156")  # 9F1A
    currency: bytes = _hex("0156")  # 5F2A
    capabilities: bytes = _hex("E0E1C8")  # 9F33
    terminal_type: bytes = _hex("22")  # 9F35: attended, merchant, online only
    application_version: bytes = _hex("0030")  # 9F09

    def __post_init__(self) -> None:
        limits = (self.contactless_limit_minor, self.cvm_limit_minor, self.floor_limit_minor)
        if not all(0 <= limit <= AMOUNT_MINOR_MAX for limit in limits):
            raise TerminalConfigError(f"limits must be 0 to {AMOUNT_MINOR_MAX}")
        if not self.supported_aids or not all(5 <= len(a) <= 16 for a in self.supported_aids):
            raise TerminalConfigError("supported AIDs: one or more, each 5 to 16 bytes")
        sizes = {"9F66": self.ttq, "9F1A": self.country, "5F2A": self.currency}
        sizes |= {"9F33": self.capabilities, "9F35": self.terminal_type}
        sizes |= {"9F09": self.application_version}
        for tag, value in sizes.items():
            if not tags.TAGS[tag].length_min <= len(value) <= tags.TAGS[tag].length_max:
                raise TerminalConfigError(f"{tag} ({tags.name_of(tag)}) has the wrong length")


@dataclass(frozen=True, slots=True)
class Transaction:
    amount_minor: int
    date: datetime.date
    amount_other_minor: int = 0
    transaction_type: int = 0x00  # 9C: goods and services

    def __post_init__(self) -> None:
        amounts = (self.amount_minor, self.amount_other_minor)
        if not all(0 <= amount <= AMOUNT_MINOR_MAX for amount in amounts):
            raise TransactionInvalid(f"amounts must be 0 to {AMOUNT_MINOR_MAX} minor units")
        if not (0 <= self.transaction_type <= 0xFF and f"{self.transaction_type:02X}".isdigit()):
            raise TransactionInvalid("transaction type (9C) must be one BCD byte, 00 to 99")


class OutcomeKind(StrEnum):
    ONLINE_REQUEST = "online_request"  # send the ARQC to the issuer
    DECLINED = "declined"
    TRY_AGAIN_SEE_PHONE = "try_again_see_phone"  # verify on the phone, then tap again
    TRY_ANOTHER_INTERFACE = "try_another_interface"  # insert or swipe; declined here
    END_APPLICATION = "end_application"  # no payment; `reason` says why


class Cvm(StrEnum):
    """The cardholder verification the tap ends with; `CVM_RESULTS` gives its 9F34."""

    NO_CVM = "no_cvm"
    CDCVM = "cdcvm"
    ONLINE_PIN = "online_pin"  # the terminal asks for the PIN before sending
    SIGNATURE = "signature"


#: CVM results (9F34): method, condition, result (EMV Book 3 Annex C3). No CVM: 1F, 00,
#: successful. Online PIN: enciphered online (02), result unknown until the issuer
#: answers. Signature: 1E, result unknown. CDCVM: 01 00 02, the value EMV Book C-2
#: (kernel 2) writes when the cardholder was verified on the device.
CVM_RESULTS: Mapping[Cvm, bytes] = MappingProxyType(
    {
        Cvm.NO_CVM: _hex("1F0002"),
        Cvm.CDCVM: _hex("010002"),
        Cvm.ONLINE_PIN: _hex("020000"),
        Cvm.SIGNATURE: _hex("1E0000"),
    }
)


@dataclass(frozen=True, slots=True)
class Exchange:
    command_hex: str
    response_hex: str  # empty when the field was lost before an answer


@dataclass(frozen=True, slots=True)
class AuthorizationData:
    """What the acquirer host puts in the authorization request."""

    pan: str
    expiry_yymmdd: str
    psn: int | None
    track2: bytes  # tag 57 as the card gave it
    aid: bytes
    icc_data: bytes  # field 55: BER-TLV, `FIELD_55_TAGS` in order


@dataclass(frozen=True, slots=True)
class KernelOutcome:
    kind: OutcomeKind
    reason: str  # stable code: "arqc", "cdcvm_needed", "field_lost", ...
    cvm: Cvm | None
    tvr: bytes
    authorization: AuthorizationData | None
    transcript: tuple[Exchange, ...]

    def transcript_text(self) -> str:
        """The APDU dialogue, one line per command and response, for printing."""
        lines: list[str] = []
        for exchange in self.transcript:
            lines.append(f"C-APDU {exchange.command_hex}")
            lines.append(f"R-APDU {exchange.response_hex or '(field lost)'}")
        return "\n".join(lines)


class _Ended(Exception):
    """The tap stops here with this outcome kind and reason: control flow inside `tap`,
    never raised out of it."""

    def __init__(self, kind: OutcomeKind, reason: str, cvm: Cvm | None = None) -> None:
        super().__init__(reason)
        self.kind, self.reason, self.cvm = kind, reason, cvm


@dataclass
class _Tap:
    """One tap's working state: the transport and everything exchanged so far."""

    transport: Transport
    transcript: list[Exchange] = field(default_factory=list)

    def exchange(self, command: bytes) -> ResponseApdu:
        if len(self.transcript) >= EXCHANGES_MAX:
            raise _Ended(OutcomeKind.END_APPLICATION, "too_many_exchanges")
        try:
            raw = self.transport.transceive(command)
        except FieldLost:
            self.transcript.append(Exchange(command.hex().upper(), ""))
            raise
        self.transcript.append(Exchange(command.hex().upper(), raw.hex().upper()))
        try:
            return apdu.parse_response(raw)
        except ApduError:
            raise _Ended(OutcomeKind.END_APPLICATION, "response_malformed") from None


class ContactlessKernel:
    """Runs taps for one terminal. `rng` draws the unpredictable numbers: seed a
    `random.Random` in tests; the default is the operating system's."""

    def __init__(self, config: TerminalConfig, rng: random.Random | None = None) -> None:
        self._config = config
        self._rng = rng if rng is not None else secrets.SystemRandom()

    def tap(self, transport: Transport, transaction: Transaction) -> KernelOutcome:
        """One tap, from pre-processing to the outcome; never raises on the card's side."""
        config = self._config
        if transaction.amount_minor > config.contactless_limit_minor:
            return _outcome(OutcomeKind.TRY_ANOTHER_INTERFACE, "over_contactless_limit", b"", [])
        terminal = self._terminal_data(transaction)
        tap = _Tap(transport)
        try:
            aid, pdol = _select_application(tap, config.supported_aids)
            card = _process(tap, _dol_data(pdol, terminal))
            card |= _read_records(tap, card["94"], card)
            cvm = _cvm(terminal["9F66"], card.get("9F6C", bytes(2)))
        except FieldLost:
            return _outcome(
                OutcomeKind.END_APPLICATION, "field_lost", terminal["95"], tap.transcript
            )
        except _Ended as ended:
            tvr = terminal["95"]
            if ended.reason == "cvm_not_possible":
                tvr = _set(tvr, TVR_CVM_NOT_SUCCESSFUL)
            return _outcome(ended.kind, ended.reason, tvr, tap.transcript, ended.cvm)
        return _decision(terminal, card, aid, cvm, tap.transcript)

    def _terminal_data(self, transaction: Transaction) -> dict[str, bytes]:
        """The terminal's data objects for this tap, as GPO will send them."""
        config = self._config
        ttq = _set(config.ttq, TTQ_ONLINE_CRYPTOGRAM_REQUIRED)
        if transaction.amount_minor > config.cvm_limit_minor:
            ttq = _set(ttq, TTQ_CVM_REQUIRED)
        tvr = _set(bytes(5), TVR_ODA_NOT_PERFORMED)  # an online-only reader does no fDDA
        if transaction.amount_minor > config.floor_limit_minor:
            tvr = _set(tvr, TVR_EXCEEDS_FLOOR_LIMIT)
        return {
            "9F66": ttq,
            "9F02": _n12(transaction.amount_minor),
            "9F03": _n12(transaction.amount_other_minor),
            "9F1A": config.country,
            "95": tvr,
            "5F2A": config.currency,
            "9A": bytes.fromhex(transaction.date.strftime("%y%m%d")),
            "9C": bytes.fromhex(f"{transaction.transaction_type:02X}"),
            "9F37": self._rng.randbytes(4),
            "9F33": config.capabilities,
            "9F35": config.terminal_type,
            "9F09": config.application_version,
        }


# -- the steps of a tap ------------------------------------------------------------------


def _select_application(tap: _Tap, supported: Sequence[bytes]) -> tuple[bytes, bytes]:
    """SELECT PPSE, then SELECT AID of the candidates by priority until one answers;
    the AID and the PDOL (empty if the card asks for none)."""
    answer = tap.exchange(apdu.select_ppse())
    if not answer.ok:
        raise _Ended(OutcomeKind.END_APPLICATION, "ppse_not_found")
    candidates = [aid for aid in _candidates(_decoded(answer.data)) if aid in supported]
    if not candidates:
        raise _Ended(OutcomeKind.END_APPLICATION, "no_supported_application")
    for aid in candidates:
        answer = tap.exchange(apdu.select_by_name(aid))
        if not answer.ok:
            continue  # EMV Book B: the next candidate
        fci = _primitives(_decoded(answer.data))
        if fci.get("84") == aid:
            return aid, fci.get("9F38", b"")
    raise _Ended(OutcomeKind.END_APPLICATION, "no_application_selected")


def _candidates(fci: tuple[Tlv, ...]) -> list[bytes]:
    """The AIDs of the PPSE directory, highest priority first (87's low nibble, 1 the
    highest; 0 or none after every numbered one), the card's order among equals."""
    entries: list[tuple[int, bytes]] = []
    for item in tlv.walk(fci):
        if item.tag != "61" or not isinstance(item.value, tuple):
            continue
        values = {child.tag: child.value for child in item.value}
        aid, priority = values.get("4F"), values.get("87", b"\x00")
        if isinstance(aid, bytes) and isinstance(priority, bytes) and len(priority) == 1:
            entries.append((priority[0] & 0x0F or 0x10, aid))
        if len(entries) >= CANDIDATES_MAX:
            break
    return [aid for _, aid in sorted(entries, key=lambda entry: entry[0])]


def _process(tap: _Tap, pdol_data: bytes) -> dict[str, bytes]:
    """GET PROCESSING OPTIONS: the card's format 2 answer, or why there is none."""
    answer = tap.exchange(apdu.get_processing_options(pdol_data))
    if answer.sw == StatusWord.COMMAND_NOT_ALLOWED:
        # EMV Book C-3: 6986 is "try again, see phone": the cardholder verifies on the
        # phone and taps again.
        raise _Ended(OutcomeKind.TRY_AGAIN_SEE_PHONE, "cdcvm_needed")
    if not answer.ok:
        raise _Ended(OutcomeKind.END_APPLICATION, "gpo_refused")
    items = _decoded(answer.data)
    if len(items) != 1 or items[0].tag != "77":
        raise _Ended(OutcomeKind.END_APPLICATION, "gpo_format_unsupported")
    found = _primitives(items)
    if "94" not in found:  # no AFL: nothing to read the card's records by
        raise _Ended(OutcomeKind.END_APPLICATION, "card_data_missing")
    return found


def _read_records(tap: _Tap, afl: bytes, known: Mapping[str, bytes]) -> dict[str, bytes]:
    """READ RECORD of every record the AFL names; their objects, none seen before."""
    found: dict[str, bytes] = {}
    for sfi, record in _afl_records(afl):
        answer = tap.exchange(apdu.read_record(sfi, record))
        if not answer.ok:
            raise _Ended(OutcomeKind.END_APPLICATION, "record_unreadable")
        items = _decoded(answer.data)
        if len(items) != 1 or items[0].tag != "70":
            raise _Ended(OutcomeKind.END_APPLICATION, "record_malformed")
        for tag, value in _primitives(items).items():
            if tag in found or tag in known:
                # EMV Book 3 §10.2: a data object the card gave twice ends the tap.
                raise _Ended(OutcomeKind.END_APPLICATION, "card_data_redundant")
            found[tag] = value
    return found


def _afl_records(afl: bytes) -> list[tuple[int, int]]:
    """(SFI, record) for every record the AFL's 4-byte entries name (Book 3 §10.2)."""
    if not afl or len(afl) % 4:
        raise _Ended(OutcomeKind.END_APPLICATION, "afl_malformed")
    records: list[tuple[int, int]] = []
    for offset in range(0, len(afl), 4):
        sfi_byte, first, last, oda = afl[offset : offset + 4]
        sfi = sfi_byte >> 3
        if sfi_byte & 0x07 or not 1 <= sfi <= 30 or not 1 <= first <= last:
            raise _Ended(OutcomeKind.END_APPLICATION, "afl_malformed")
        if oda > last - first + 1:
            raise _Ended(OutcomeKind.END_APPLICATION, "afl_malformed")
        records += [(sfi, record) for record in range(first, last + 1)]
        if len(records) > RECORDS_MAX:
            raise _Ended(OutcomeKind.END_APPLICATION, "afl_too_long")
    return records


def _cvm(ttq: bytes, ctq: bytes) -> Cvm:
    """The CVM of this tap from what the terminal asked (TTQ) and the card answered
    (CTQ), EMV Book C-3 style; `_Ended` when a CVM is required and none can be done."""
    cdcvm = _bit(ctq, CTQ_CDCVM_PERFORMED) and _bit(ttq, TTQ_CDCVM)
    if not _bit(ttq, TTQ_CVM_REQUIRED):
        return Cvm.CDCVM if cdcvm else Cvm.NO_CVM
    rules = (
        (cdcvm, Cvm.CDCVM),
        (_bit(ctq, CTQ_ONLINE_PIN) and _bit(ttq, TTQ_ONLINE_PIN), Cvm.ONLINE_PIN),
        (_bit(ctq, CTQ_SIGNATURE) and _bit(ttq, TTQ_SIGNATURE), Cvm.SIGNATURE),
        (_bit(ttq, TTQ_ONLINE_PIN), Cvm.ONLINE_PIN),  # the card said nothing: the reader's
        (_bit(ttq, TTQ_SIGNATURE), Cvm.SIGNATURE),
    )
    chosen = next((cvm for applies, cvm in rules if applies), None)
    if chosen is None:
        raise _Ended(OutcomeKind.DECLINED, "cvm_not_possible")
    return chosen


def _decision(
    terminal: Mapping[str, bytes],
    card: Mapping[str, bytes],
    aid: bytes,
    cvm: Cvm,
    transcript: list[Exchange],
) -> KernelOutcome:
    """The outcome once the card's data is all read: online with the ARQC, or not."""
    tvr = terminal["95"]
    missing = [tag for tag in CARD_TAGS_REQUIRED if tag not in card]
    if missing or tags.check(Tlv(tag, value) for tag, value in card.items()):
        return _outcome(OutcomeKind.END_APPLICATION, "card_data_missing", tvr, transcript, cvm)
    pan = _track2_pan(card["57"])
    if pan is None or ("5A" in card and card["5A"].hex().upper().rstrip("F") != pan):
        return _outcome(OutcomeKind.END_APPLICATION, "card_data_inconsistent", tvr, transcript)
    cid = card["9F27"][0] & CID_TYPE_MASK
    if cid == CID_AAC:
        return _outcome(OutcomeKind.DECLINED, "card_declined", tvr, transcript, cvm)
    if cid != CID_ARQC:
        return _outcome(OutcomeKind.DECLINED, "unexpected_cryptogram", tvr, transcript, cvm)
    # The terminal's own values win over anything the card sent under the same tags.
    data = {**card, **terminal, "9F34": CVM_RESULTS[cvm], "84": aid}
    icc_data = tlv.encode(Tlv(tag, data[tag]) for tag in FIELD_55_TAGS if tag in data)
    psn = card.get("5F34")
    authorization = AuthorizationData(
        pan=pan,
        expiry_yymmdd=card["5F24"].hex(),
        psn=int(psn.hex()) if psn is not None and psn.hex().isdigit() else None,
        track2=card["57"],
        aid=aid,
        icc_data=icc_data,
    )
    return KernelOutcome(
        OutcomeKind.ONLINE_REQUEST, "arqc", cvm, tvr, authorization, tuple(transcript)
    )


# -- data helpers ------------------------------------------------------------------------


def _dol_data(dol: bytes, values: Mapping[str, bytes]) -> bytes:
    """The values a data object list asks for, each fitted to its length (EMV Book 3
    §5.4): numeric values are cut or padded on the left, others on the right; a tag
    the terminal does not have is zeros."""
    entries = _dol_entries(dol)
    if sum(length for _, length in entries) > PDOL_DATA_BYTES_MAX:
        raise _Ended(OutcomeKind.END_APPLICATION, "pdol_malformed")
    out = b""
    for tag, length in entries:
        value = values.get(tag)
        info = tags.TAGS.get(tag)
        if value is None:
            out += bytes(length)
        elif info is not None and info.format is Format.N:
            out += value[-length:].rjust(length, b"\x00") if length else b""
        elif info is not None and info.format is Format.CN:
            out += value[:length].ljust(length, b"\xff")
        else:
            out += value[:length].ljust(length, b"\x00")
    return out


def _dol_entries(dol: bytes) -> list[tuple[str, int]]:
    """(tag, length) of each entry of a data object list."""
    entries: list[tuple[str, int]] = []
    offset = 0
    while offset < len(dol):
        length_at = offset + 1
        if dol[offset] & 0x1F == 0x1F:  # more tag bytes follow, the last without b8
            while length_at < len(dol) and dol[length_at] & 0x80:
                length_at += 1
            length_at += 1
        too_long = length_at - offset > tlv.TAG_BYTES_MAX or len(entries) >= DOL_ENTRIES_MAX
        if too_long or length_at >= len(dol):
            raise _Ended(OutcomeKind.END_APPLICATION, "pdol_malformed")
        entries.append((dol[offset:length_at].hex().upper(), dol[length_at]))
        offset = length_at + 1
    return entries


def _decoded(data: bytes) -> tuple[Tlv, ...]:
    try:
        return tlv.decode(data)
    except TlvError:
        raise _Ended(OutcomeKind.END_APPLICATION, "card_data_malformed") from None


def _primitives(items: Iterable[Tlv]) -> dict[str, bytes]:
    try:
        return tlv.primitives(items)
    except TlvError:
        raise _Ended(OutcomeKind.END_APPLICATION, "card_data_redundant") from None


def _track2_pan(track2: bytes) -> str | None:
    """The PAN of track 2 equivalent data: the digits before the separator D."""
    pan, separator, _ = track2.hex().upper().partition("D")
    return pan if separator and pan.isdigit() and 12 <= len(pan) <= 19 else None


def _n12(amount_minor: int) -> bytes:
    return bytes.fromhex(f"{amount_minor:012d}")


def _bit(value: bytes, where: tuple[int, int]) -> bool:
    index, mask = where
    return len(value) > index and bool(value[index] & mask)


def _set(value: bytes, where: tuple[int, int]) -> bytes:
    index, mask = where
    out = bytearray(value)
    out[index] |= mask
    return bytes(out)


def _outcome(
    kind: OutcomeKind,
    reason: str,
    tvr: bytes,
    transcript: list[Exchange],
    cvm: Cvm | None = None,
) -> KernelOutcome:
    return KernelOutcome(kind, reason, cvm, tvr, None, tuple(transcript))
