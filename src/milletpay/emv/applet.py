"""The phone's host card emulation (HCE) payment applet: what a Millet Pay phone answers
a QuickPass terminal over NFC, qPBOC style (the cryptogram comes in the GPO answer).

It holds one or more tokenized cards, each with its current limited-use key (LUK), and
answers SELECT PPSE, SELECT AID, GET PROCESSING OPTIONS and READ RECORD. It makes an
ARQC only with a usable LUK (unexpired, under its uses, ATCs left in its window) and,
when the terminal asks for a CVM, only after the wallet confirmed a biometric match on
the phone (`confirm_cdcvm`). It never raises on what a terminal sends: every command gets
bytes ending in a status word of `apdu.StatusWord`. It never imports `milletpay.cards`
(emv sits below cards): the wallet hands it `HceCard` and `HceLuk` values.

Issuer application data (9F10) of the unionpay-cvn01 profile, 14 bytes, PBOC 3.0 layout
(JR/T 0025): a standard part, then issuer discretionary data:

    byte 0      07        length of the standard part
    byte 1      01        derivation key index: LUKs derived as `cards.luk.derive_luk`
    byte 2      01        cryptogram version number (the profile's)
    byte 3      03        length of the card verification results
    bytes 4-6   A0 00 0x  CVR: 1st GENERATE AC ARQC, 2nd not requested; byte 6 b1 is
                          set when the consumer device CVM was performed (Millet Pay's
                          own assignment), so the issuer sees it under the cryptogram
    byte 7      01        algorithm: TDES
    byte 8      05        length of the issuer discretionary data
    byte 9      01        its format: Millet Pay LUK index
    bytes 10-13 ...       the LUK index, 4 bytes big-endian

The cryptogram covers bytes 3 to 6 (the profile's IAD slice); the LUK index is there for
the token service to find the key, which it checks again against the ATC's window.
"""

from __future__ import annotations

import calendar
import datetime
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Final

from milletpay.core.clock import NS_PER_S, Clock
from milletpay.core.errors import MilletError
from milletpay.emv import crypto, tlv
from milletpay.emv.apdu import (
    AID_BYTES_MAX,
    AID_BYTES_MIN,
    CLA_INTERINDUSTRY,
    CLA_PROPRIETARY,
    INS_GET_PROCESSING_OPTIONS,
    INS_READ_RECORD,
    INS_SELECT,
    PPSE_NAME,
    READ_RECORD_P2_BY_NUMBER,
    SELECT_BY_NAME,
    SELECT_FIRST_OCCURRENCE,
    ApduError,
    CommandApdu,
    StatusWord,
    parse_command,
    respond,
)
from milletpay.emv.profiles import PROFILES, profile
from milletpay.emv.tlv import Tlv, TlvError

#: A fingerprint match on the phone allows one cryptogram within this window.
CDCVM_VALID_S: Final = 60
CARDS_MAX: Final = 6  # the PPSE answer must fit one short response
LUK_BYTES: Final = 16
LUK_INDEX_MAX: Final = 0xFFFF_FFFF
ATC_FIRST: Final = 1
ATC_MAX: Final = 0xFFFF

#: UnionPay contactless AIDs by card product (REFERENCES.md, "EMV, tokens, contactless").
UNIONPAY_AIDS: Mapping[str, bytes] = MappingProxyType(
    {
        "debit": bytes.fromhex("A000000333010101"),
        "credit": bytes.fromhex("A000000333010102"),
        "quasi_credit": bytes.fromhex("A000000333010103"),
    }
)

#: What the applet asks the terminal for in GPO (tag, length in bytes), in order.
PDOL: tuple[tuple[str, int], ...] = (
    ("9F66", 4),  # terminal transaction qualifiers
    ("9F02", 6),  # amount, authorised
    ("9F03", 6),  # amount, other
    ("9F1A", 2),  # terminal country code
    ("95", 5),  # terminal verification results
    ("5F2A", 2),  # transaction currency code
    ("9A", 3),  # transaction date
    ("9C", 1),  # transaction type
    ("9F37", 4),  # unpredictable number
)
PDOL_DATA_BYTES: Final = sum(length for _, length in PDOL)

#: Application interchange profile: cardholder verification supported, terminal risk
#: management to be performed; no SDA, DDA or CDA (an HCE phone holds no ICC private key,
#: so every payment goes online).
AIP: Final = bytes.fromhex("1800")
SFI: Final = 1
#: AFL: SFI 1, records 1 to 2, none for offline data authentication.
AFL: Final = bytes((SFI << 3, 1, 2, 0))
CID_ARQC: Final = b"\x80"
SERVICE_CODE: Final = "201"  # international, IC; normal authorisation; no restrictions
ISSUER_COUNTRY: Final = bytes.fromhex("0156")
LANGUAGE: Final = b"zhen"

# Terminal transaction qualifiers (9F66) and card transaction qualifiers (9F6C), EMV
# Book C-3: (byte, bit mask).
TTQ_ONLINE_PIN = (0, 0x04)
TTQ_SIGNATURE = (0, 0x02)
TTQ_CVM_REQUIRED = (1, 0x40)
TTQ_CDCVM = (2, 0x40)


class CardCvm(Enum):
    """What the applet tells the terminal about cardholder verification: the card
    transaction qualifiers (9F6C) of its GPO answer. When there is no cryptogram to
    make, `_card_cvm` gives a status word instead."""

    NONE = bytes.fromhex("0000")
    CDCVM = bytes.fromhex("0080")  # byte 2 b8: consumer device CVM performed
    ONLINE_PIN = bytes.fromhex("8000")  # byte 1 b8: online PIN required
    SIGNATURE = bytes.fromhex("4000")  # byte 1 b7: signature required


class AppletError(MilletError):
    """A card or key handed to the applet is malformed or does not fit; nothing changed."""

    code = "hce_applet_invalid"


# -- in-app payments ------------------------------------------------------------------------

#: The in-app entry point's own transaction qualifiers (9F66), in place of a terminal's:
#: qPBOC, online cryptogram required, consumer device CVM supported; no CVM required of
#: the card (the payer approves in the wallet, with the PIN or quick pay, first).
IN_APP_TTQ: Final = bytes.fromhex("20804000")
IN_APP_COUNTRY: Final = bytes.fromhex("0156")  # 9F1A: the platform's country, China
IN_APP_TVR: Final = bytes(5)  # 95: no terminal, nothing for it to record
IN_APP_UN_BYTES: Final = 4
#: Field 55 of an in-app payment, in this order: the tap's tags a terminal has no part in
#: are left out (9F33, 9F34, 9F35, 84, 9F09).
IN_APP_FIELD_55_TAGS: Final = (
    "9F26", "9F27", "9F10", "9F37", "9F36", "95", "9A", "9C", "9F02", "5F2A", "82",
    "9F1A", "9F03", "9F66", "9F6C", "5F34",
)  # fmt: skip
_TRANSACTION_TYPE = re.compile(r"\A[0-9]{2}\Z")


@dataclass(frozen=True, slots=True)
class InAppTransaction:
    """What an in-app cryptogram covers, as the platform gave it for one payment: the
    amount, the currency (ISO 4217 numeric), the date, the transaction type (9C, "00"
    goods and services) and the platform's unpredictable number for this payment."""

    amount_fen: int
    currency_numeric: int
    date: datetime.date
    unpredictable_number: bytes
    transaction_type: str = "00"

    def __post_init__(self) -> None:
        _require(0 < self.amount_fen < 10**12, "amount must be 1 to 12 digits of fen")
        _require(0 < self.currency_numeric < 1000, "currency must be ISO 4217 numeric")
        _require(len(self.unpredictable_number) == IN_APP_UN_BYTES, "UN must be 4 bytes")
        _require(bool(_TRANSACTION_TYPE.match(self.transaction_type)), "type is 2 digits")

    def terminal_data(self) -> dict[str, bytes]:
        """The values a terminal would give in GPO (`PDOL`), from the platform instead."""
        return {
            "9F66": IN_APP_TTQ,
            "9F02": bytes.fromhex(f"{self.amount_fen:012d}"),
            "9F03": bytes(6),
            "9F1A": IN_APP_COUNTRY,
            "95": IN_APP_TVR,
            "5F2A": bytes.fromhex(f"{self.currency_numeric:04d}"),
            "9A": bytes.fromhex(self.date.strftime("%y%m%d")),
            "9C": bytes.fromhex(self.transaction_type),
            "9F37": self.unpredictable_number,
        }


@dataclass(frozen=True, slots=True, repr=False)
class HceLuk:
    """A limited-use key as the phone holds it; its repr hides the key."""

    key: bytes
    index: int
    profile: str  # the cryptogram profile (`emv.profiles`)
    atc_first: int
    atc_last: int
    uses_max: int
    expires_at_ns: int

    def __post_init__(self) -> None:
        _require(len(self.key) == LUK_BYTES, f"a LUK is {LUK_BYTES} bytes")
        _require(1 <= self.index <= LUK_INDEX_MAX, "LUK index outside 1..FFFFFFFF")
        _require(self.profile in _IAD_LAYOUTS, f"no IAD layout for profile {self.profile!r}")
        _require(ATC_FIRST <= self.atc_first <= self.atc_last <= ATC_MAX, "bad ATC window")
        _require(self.uses_max >= 1, "uses_max must be at least 1")

    def __repr__(self) -> str:
        return (
            f"HceLuk(index={self.index}, profile={self.profile}, "
            f"atc={self.atc_first}..{self.atc_last}, uses_max={self.uses_max})"
        )


_PAN = re.compile(r"\A[0-9]{12,19}\Z")
_YYMM = re.compile(r"\A[0-9]{2}(0[1-9]|1[0-2])\Z")
_PRINTABLE = re.compile(r"\A[ -~]+\Z")


@dataclass(frozen=True, slots=True)
class HceCard:
    """One tokenized card on the phone: what it says to a terminal, and its LUK."""

    token_pan: str
    expiry_yymm: str
    psn: int
    aid: bytes
    label: str
    priority: int  # 1 (highest) to 15
    luk: HceLuk
    cardholder_name: str | None = None

    def __post_init__(self) -> None:
        _require(bool(_PAN.match(self.token_pan)), "token PAN must be 12 to 19 digits")
        _require(bool(_YYMM.match(self.expiry_yymm)), "expiry must be YYMM")
        _require(0 <= self.psn <= 99, "PSN must be 0 to 99")
        _require(AID_BYTES_MIN <= len(self.aid) <= AID_BYTES_MAX, "AID must be 5 to 16 bytes")
        _require(self.aid != PPSE_NAME, "an AID cannot be the PPSE's name")
        _require(_printable(self.label, 1, 16), "label must be 1 to 16 printable ASCII")
        _require(1 <= self.priority <= 15, "priority must be 1 to 15")
        name = self.cardholder_name
        _require(name is None or _printable(name, 2, 26), "name must be 2 to 26 ASCII")


@dataclass(frozen=True, slots=True)
class KeyStatus:
    """How far a card's current LUK still goes, for the wallet's replenishment."""

    luk_index: int
    atc_next: int
    uses_left: int
    expires_at_ns: int
    usable: bool


@dataclass(slots=True)
class _CardState:
    card: HceCard
    luk: HceLuk
    atc_next: int
    uses: int = 0
    # The answers that never change while the card is on the phone, made once: its
    # SELECT (the FCI) and its READ RECORDs by (SFI, record number).
    selected_answer: bytes = b""
    record_answers: dict[tuple[int, int], bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.selected_answer = respond(StatusWord.OK, tlv.encode(_aid_fci(self.card)))
        self.record_answers = {
            place: respond(StatusWord.OK, tlv.encode(Tlv("70", record)))
            for place, record in _records(self.card).items()
        }


@dataclass(slots=True)
class _Session:
    """What lives while the phone stays in one field: the selected application."""

    selected: _CardState | None = None
    processing_started: bool = False


class PaymentApplet:
    """The APDU processor. Not thread-safe: one field, one terminal at a time."""

    def __init__(self, cards: Iterable[HceCard], clock: Clock) -> None:
        states = [_CardState(card, card.luk, card.luk.atc_first) for card in cards]
        if not 1 <= len(states) <= CARDS_MAX:
            raise AppletError(f"an applet holds 1 to {CARDS_MAX} cards, not {len(states)}")
        if len({s.card.aid for s in states}) != len(states):
            raise AppletError("two cards share an AID")
        if len({s.card.token_pan for s in states}) != len(states):
            raise AppletError("two cards share a token PAN")
        self._cards = {s.card.token_pan: s for s in states}
        self._ppse_answer = respond(StatusWord.OK, tlv.encode(_ppse_fci(states)))
        self._clock = clock
        self._session = _Session()
        self._cdcvm_at_ns: int | None = None

    # -- the wallet's side ------------------------------------------------------------

    def confirm_cdcvm(self, now_ns: int) -> None:
        """The phone matched the cardholder's fingerprint at `now_ns`: the next cryptogram
        within `CDCVM_VALID_S` says so, and spends the confirmation."""
        self._cdcvm_at_ns = now_ns

    def load_keys(self, token_pan: str, luk: HceLuk) -> None:
        """Install a newer LUK for a card (replenishment); the ATC never goes back."""
        state = self._cards.get(token_pan)
        if state is None:
            raise AppletError("no card with this token PAN")
        if luk.index <= state.luk.index:
            raise AppletError(f"LUK {luk.index} is not newer than {state.luk.index}")
        if luk.atc_last < state.atc_next:
            raise AppletError(f"LUK {luk.index}'s ATC window is behind the card's ATC")
        state.luk = luk
        state.atc_next = max(state.atc_next, luk.atc_first)
        state.uses = 0

    def key_status(self, token_pan: str) -> KeyStatus:
        state = self._cards.get(token_pan)
        if state is None:
            raise AppletError("no card with this token PAN")
        return KeyStatus(
            luk_index=state.luk.index,
            atc_next=state.atc_next,
            uses_left=state.luk.uses_max - state.uses,
            expires_at_ns=state.luk.expires_at_ns,
            usable=self._key_usable(state),
        )

    def in_app_cryptogram(self, token_pan: str, transaction: InAppTransaction) -> bytes:
        """An in-app payment's ICC data (ISO 8583 field 55, `IN_APP_FIELD_55_TAGS`): the
        ARQC over `transaction` under the card's current LUK, exactly as a tap's GPO
        makes it (one ATC and one use of the LUK spent; a valid fingerprint is spent
        and said in the CVR). `AppletError` for an unknown card or a LUK used up
        (replenish it, then ask again): no ATC is spent then."""
        state = self._cards.get(token_pan)
        if state is None:
            raise AppletError("no card with this token PAN")
        if not self._key_usable(state):
            raise AppletError("the card's limited-use key is used up: replenish it")
        terminal = transaction.terminal_data()
        cvm = CardCvm.CDCVM if self._cdcvm_valid() else CardCvm.NONE
        answer = self._arqc_answer(state, terminal, cvm)
        assert isinstance(answer.value, tuple)
        card = {item.tag: item.value for item in answer.value if isinstance(item.value, bytes)}
        data = terminal | card | {"5F34": bytes.fromhex(f"{state.card.psn:02d}")}
        return tlv.encode(Tlv(tag, data[tag]) for tag in IN_APP_FIELD_55_TAGS)

    def deactivate(self) -> None:
        """The field is gone: the selection and the session are forgotten."""
        self._session = _Session()

    # -- the terminal's side ----------------------------------------------------------

    def process(self, command: bytes) -> bytes:
        """The response APDU to one command APDU."""
        try:
            apdu = parse_command(command)
        except ApduError as exc:
            return respond(exc.status)
        entry = _COMMANDS.get(apdu.ins)
        if apdu.cla not in _CLASSES:
            return respond(StatusWord.CLA_NOT_SUPPORTED)
        if entry is None:
            return respond(StatusWord.INS_NOT_SUPPORTED)
        cla, handler = entry
        if apdu.cla != cla:
            return respond(StatusWord.CLA_NOT_SUPPORTED)
        return handler(self, apdu)

    def _select(self, apdu: CommandApdu) -> bytes:
        # Any SELECT ends the session with the application selected before.
        self._session = _Session()
        if (apdu.p1, apdu.p2) != (SELECT_BY_NAME, SELECT_FIRST_OCCURRENCE):
            return respond(StatusWord.INCORRECT_P1_P2)
        if not 1 <= len(apdu.data) <= AID_BYTES_MAX:
            return respond(StatusWord.WRONG_LENGTH)
        if apdu.data == PPSE_NAME:
            return self._ppse_answer
        state = next((s for s in self._cards.values() if s.card.aid == apdu.data), None)
        if state is None:
            return respond(StatusWord.FILE_NOT_FOUND)
        self._session.selected = state
        return state.selected_answer

    def _get_processing_options(self, apdu: CommandApdu) -> bytes:
        state = self._session.selected
        if state is None or self._session.processing_started:
            return respond(StatusWord.CONDITIONS_NOT_SATISFIED)
        if (apdu.p1, apdu.p2) != (0, 0):
            return respond(StatusWord.INCORRECT_P1_P2)
        terminal = _pdol_values(apdu.data)
        if isinstance(terminal, StatusWord):
            return respond(terminal)
        if not self._key_usable(state):
            return respond(StatusWord.CONDITIONS_NOT_SATISFIED)
        cvm = _card_cvm(terminal["9F66"], self._cdcvm_valid())
        if isinstance(cvm, StatusWord):
            return respond(cvm)
        self._session.processing_started = True
        answer = self._arqc_answer(state, terminal, cvm)
        return respond(StatusWord.OK, tlv.encode(answer))

    def _read_record(self, apdu: CommandApdu) -> bytes:
        state = self._session.selected
        if state is None:
            return respond(StatusWord.CONDITIONS_NOT_SATISFIED)
        if apdu.p2 & 0x07 != READ_RECORD_P2_BY_NUMBER:
            return respond(StatusWord.INCORRECT_P1_P2)
        record = state.record_answers.get((apdu.p2 >> 3, apdu.p1))
        return respond(StatusWord.RECORD_NOT_FOUND) if record is None else record

    # -- keys and the cryptogram ------------------------------------------------------

    def _key_usable(self, state: _CardState) -> bool:
        return (
            self._clock.now_ns() < state.luk.expires_at_ns
            and state.uses < state.luk.uses_max
            and state.atc_next <= state.luk.atc_last
        )

    def _cdcvm_valid(self) -> bool:
        confirmed = self._cdcvm_at_ns
        now_ns = self._clock.now_ns()
        return confirmed is not None and confirmed <= now_ns < confirmed + CDCVM_VALID_S * NS_PER_S

    def _arqc_answer(self, state: _CardState, terminal: dict[str, bytes], cvm: CardCvm) -> Tlv:
        """Spend one ATC and one use of the LUK on an ARQC; the GPO answer, format 2."""
        atc = state.atc_next.to_bytes(2, "big")
        state.atc_next += 1
        state.uses += 1
        if cvm is CardCvm.CDCVM:
            self._cdcvm_at_ns = None  # one fingerprint, one payment
        iad = _IAD_LAYOUTS[state.luk.profile](state.luk, cvm)
        data = {**terminal, "82": AIP, "9F36": atc, "9F10": iad}
        arqc = crypto.generate_ac(profile(state.luk.profile), state.luk.key, data)
        return Tlv(
            "77",
            (
                Tlv("82", AIP),
                Tlv("94", AFL),
                Tlv("9F36", atc),
                Tlv("9F10", iad),
                Tlv("9F27", CID_ARQC),
                Tlv("9F26", arqc),
                Tlv("9F6C", cvm.value),
            ),
        )


_CLASSES: Final = frozenset({CLA_INTERINDUSTRY, CLA_PROPRIETARY})
_Handler = Callable[[PaymentApplet, CommandApdu], bytes]
#: INS → (the class it comes in, its handler).
_COMMANDS: Mapping[int, tuple[int, _Handler]] = MappingProxyType(
    {
        INS_SELECT: (CLA_INTERINDUSTRY, PaymentApplet._select),
        INS_GET_PROCESSING_OPTIONS: (CLA_PROPRIETARY, PaymentApplet._get_processing_options),
        INS_READ_RECORD: (CLA_INTERINDUSTRY, PaymentApplet._read_record),
    }
)


def _card_cvm(ttq: bytes, cdcvm_valid: bool) -> CardCvm | StatusWord:
    """The CVM the card asks for, in order of preference; a status word when there is no
    cryptogram to make. Without a fingerprint, a terminal that asks for a CVM and
    supports CDCVM gets 6986: EMV Book C-3 (kernel 3) reads it as "try again, see phone",
    keeps the transaction and waits for the tap after the fingerprint. A declined AAC
    would end the transaction instead, and spend an ATC and a use of the LUK on nothing.
    """
    required, cdcvm_supported = _bit(ttq, TTQ_CVM_REQUIRED), _bit(ttq, TTQ_CDCVM)
    if cdcvm_valid and cdcvm_supported:
        return CardCvm.CDCVM
    if not required:
        return CardCvm.NONE
    if cdcvm_supported:
        return StatusWord.COMMAND_NOT_ALLOWED
    if _bit(ttq, TTQ_ONLINE_PIN):
        return CardCvm.ONLINE_PIN
    if _bit(ttq, TTQ_SIGNATURE):
        return CardCvm.SIGNATURE
    return StatusWord.CONDITIONS_NOT_SATISFIED


def _bit(value: bytes, where: tuple[int, int]) -> bool:
    index, mask = where
    return bool(value[index] & mask)


def _pdol_values(data: bytes) -> dict[str, bytes] | StatusWord:
    """The terminal's values from the GPO command data (83 L PDOL-data)."""
    try:
        items = tlv.decode(data)
    except TlvError:
        return StatusWord.INCORRECT_DATA
    if len(items) != 1 or items[0].tag != "83" or not isinstance(items[0].value, bytes):
        return StatusWord.INCORRECT_DATA
    values = items[0].value
    if len(values) != PDOL_DATA_BYTES:
        return StatusWord.WRONG_LENGTH
    out: dict[str, bytes] = {}
    offset = 0
    for tag, length in PDOL:
        out[tag] = values[offset : offset + length]
        offset += length
    return out


# -- what the applet says ---------------------------------------------------------------

CVR_ARQC: Final = bytes.fromhex("A00000")  # 1st GENERATE AC: ARQC; 2nd: not requested
CVR_CDCVM = (2, 0x01)  # Millet Pay's assignment: consumer device CVM performed
IAD_DKI: Final = 0x01
IAD_ALGORITHM_TDES: Final = 0x01
IAD_IDD_LUK_INDEX: Final = 0x01


def _pboc_iad(luk: HceLuk, cvm: CardCvm) -> bytes:
    """9F10 for the unionpay-cvn01 profile; the layout is in the module docstring."""
    cvr = bytearray(CVR_ARQC)
    if cvm is CardCvm.CDCVM:
        cvr[CVR_CDCVM[0]] |= CVR_CDCVM[1]
    standard = (
        bytes((IAD_DKI, PROFILES[luk.profile].cvn, len(cvr))) + cvr + bytes((IAD_ALGORITHM_TDES,))
    )
    discretionary = bytes((IAD_IDD_LUK_INDEX,)) + luk.index.to_bytes(4, "big")
    return bytes((len(standard),)) + standard + bytes((len(discretionary),)) + discretionary


#: Profile → how its 9F10 is laid out; a LUK of another profile is refused at loading.
_IAD_LAYOUTS: Mapping[str, Callable[[HceLuk, CardCvm], bytes]] = MappingProxyType(
    {"unionpay-cvn01": _pboc_iad}
)
assert set(_IAD_LAYOUTS) <= set(PROFILES)


def _ppse_fci(states: Iterable[_CardState]) -> Tlv:
    entries = tuple(
        Tlv(
            "61",
            (
                Tlv("4F", s.card.aid),
                Tlv("50", s.card.label.encode("ascii")),
                Tlv("87", bytes((s.card.priority,))),
            ),
        )
        for s in sorted(states, key=lambda s: s.card.priority)
    )
    return Tlv("6F", (Tlv("84", PPSE_NAME), Tlv("A5", (Tlv("BF0C", entries),))))


def _aid_fci(card: HceCard) -> Tlv:
    pdol = b"".join(bytes.fromhex(tag) + bytes((length,)) for tag, length in PDOL)
    proprietary = (
        Tlv("50", card.label.encode("ascii")),
        Tlv("87", bytes((card.priority,))),
        Tlv("9F38", pdol),
        Tlv("5F2D", LANGUAGE),
    )
    return Tlv("6F", (Tlv("84", card.aid), Tlv("A5", proprietary)))


def _records(card: HceCard) -> dict[tuple[int, int], tuple[Tlv, ...]]:
    """(SFI, record number) → the record's objects, as the AFL names them."""
    first: tuple[Tlv, ...] = (Tlv("57", _track2(card)),)
    if card.cardholder_name is not None:
        first += (Tlv("5F20", card.cardholder_name.encode("ascii")),)
    second = (
        Tlv("5A", _compressed_numeric(card.token_pan)),
        Tlv("5F24", bytes.fromhex(_expiry_yymmdd(card.expiry_yymm))),
        Tlv("5F28", ISSUER_COUNTRY),
        Tlv("5F34", bytes.fromhex(f"{card.psn:02d}")),
    )
    return {(SFI, 1): first, (SFI, 2): second}


def _track2(card: HceCard) -> bytes:
    """Track 2 equivalent data: PAN, separator D, YYMM, service code, padded with F."""
    return _compressed_numeric(f"{card.token_pan}D{card.expiry_yymm}{SERVICE_CODE}")


def _compressed_numeric(digits: str) -> bytes:
    return bytes.fromhex(digits + "F" * (len(digits) % 2))


def _expiry_yymmdd(yymm: str) -> str:
    """The card expires at the end of its expiry month."""
    year, month = 2000 + int(yymm[:2]), int(yymm[2:])
    return f"{yymm}{calendar.monthrange(year, month)[1]:02d}"


def _printable(text: str, length_min: int, length_max: int) -> bool:
    return length_min <= len(text) <= length_max and bool(_PRINTABLE.match(text))


def _require(condition: bool, what: str) -> None:
    if not condition:
        raise AppletError(what)
