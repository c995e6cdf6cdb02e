"""The PBOC electronic purse's keys, session keys, MACs and TACs, shared by the purse applet
(`purse`), the gates' secure module and the issuer host (`sam`), and later by clearing.

Sources: JR/T 0025 (PBOC 2.0/3.0) part 2, "electronic deposit / electronic purse", the
purchase, load and TAC computations of its Annex; JT/T 978 keeps them for the
interoperable transport card. What is taken from them:

- card keys are double-length TDES keys (16 bytes), diversified per card from the city
  issuer's master keys: left = TDES(MK)[D], right = TDES(MK)[~D], D the rightmost 8 bytes of
  the 10-byte card number (application serial number, file 0x15);
- a session key is single DES (8 bytes): TDES(card key)[8 bytes of diversification data];
- MAC1, MAC2 and TAC are the leftmost 4 bytes of ISO/IEC 9797-1 MAC algorithm 1 with single
  DES, padding method 2 (80 then 00s), IV zero;
- the TAC key is the card's DTK halves XORed (left XOR right), used as a single DES key.

Nothing here logs, stores or formats a key; a malformed input raises `PurseCryptoError`
naming the field, never its value. Comparisons of MACs are constant time.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from pyemv import mac as _mac
from pyemv import tools as _tools

from milletpay.core.errors import MilletError

CARD_KEY_BYTES = 16  # DPK, DLK, DTK and the city master keys: double-length TDES
DES_KEY_BYTES = 8  # session keys and the TAC key: single DES
BLOCK_BYTES = 8
MAC_BYTES = 4  # MAC1, MAC2 and TAC: the leftmost 4 bytes of the CBC-MAC
CARD_NUMBER_BYTES = 10  # application serial number in file 0x15, 20 BCD digits
DIVERSIFIER_BYTES = 8  # the rightmost 8 bytes of the card number
RANDOM_BYTES = 4
COUNTER_BYTES = 2
AMOUNT_BYTES = 4
TERMINAL_ID_BYTES = 6
TERMINAL_TRANSACTION_NUMBER_BYTES = 4
DATE_BYTES = 4  # YYYYMMDD in BCD
TIME_BYTES = 3  # hhmmss in BCD
BALANCE_BYTES = 4

TRANSACTION_TYPE_LOAD = 0x02
TRANSACTION_TYPE_PURCHASE = 0x06
TRANSACTION_TYPE_COMPOSITE = 0x09  # composite (CAPP) purchase, the transit variant

LOAD_SESSION_SUFFIX = bytes.fromhex("8000")  # the load session key's last 2 bytes

PADDING_METHOD_1 = 1  # zeros; used by the FIPS 113 known answer only
PADDING_METHOD_2 = 2  # 80 then zeros: every PBOC e-purse MAC and TAC


class PurseCryptoError(MilletError):
    """An input to a purse key derivation or MAC is missing or malformed."""

    code = "purse_crypto_invalid"


@dataclass(frozen=True, slots=True, repr=False)
class CardKeys:
    """One card's keys for one key index: DPK (purchase), DLK (load), DTK (TAC).

    `key_index` is what INITIALIZE names; `key_version` is what the card answers so that
    the terminal's module picks the matching master key. The repr hides the keys."""

    key_index: int
    key_version: int
    dpk: bytes
    dlk: bytes
    dtk: bytes

    def __post_init__(self) -> None:
        _check_byte("key_index", self.key_index)
        _check_byte("key_version", self.key_version)
        for field, key in (("dpk", self.dpk), ("dlk", self.dlk), ("dtk", self.dtk)):
            _check_length(field, key, CARD_KEY_BYTES)

    def __repr__(self) -> str:
        return (
            f"CardKeys(key_index={self.key_index}, key_version={self.key_version}, keys=<hidden>)"
        )


# --- Keys ---------------------------------------------------------------------------


def diversify(master_key: bytes, card_number: bytes) -> bytes:
    """A card key: TDES(MK)[D] || TDES(MK)[~D], D the rightmost 8 bytes of the card number."""
    _check_length("master key", master_key, CARD_KEY_BYTES)
    _check_length("card_number", card_number, CARD_NUMBER_BYTES)
    data = card_number[-DIVERSIFIER_BYTES:]
    complement = bytes(b ^ 0xFF for b in data)
    return _tdes(master_key, data) + _tdes(master_key, complement)


def purchase_session_key(
    dpk: bytes, card_random: bytes, offline_counter: int, terminal_transaction_number: int
) -> bytes:
    """SESPK = TDES(DPK)[random 4 || offline counter 2 || terminal transaction number's
    rightmost 2 bytes]: a single DES key."""
    _check_length("dpk", dpk, CARD_KEY_BYTES)
    _check_length("card_random", card_random, RANDOM_BYTES)
    ttn = _uint("terminal_transaction_number", terminal_transaction_number, 4)
    return _tdes(dpk, card_random + _uint("offline_counter", offline_counter, 2) + ttn[2:])


def load_session_key(dlk: bytes, card_random: bytes, online_counter: int) -> bytes:
    """SESLK = TDES(DLK)[random 4 || online counter 2 || 80 00]: a single DES key."""
    _check_length("dlk", dlk, CARD_KEY_BYTES)
    _check_length("card_random", card_random, RANDOM_BYTES)
    counter = _uint("online_counter", online_counter, 2)
    return _tdes(dlk, card_random + counter + LOAD_SESSION_SUFFIX)


def tac_key(dtk: bytes) -> bytes:
    """The single DES key the TAC is computed with: DTK's left half XOR its right half."""
    _check_length("dtk", dtk, CARD_KEY_BYTES)
    return _tools.xor(dtk[:DES_KEY_BYTES], dtk[DES_KEY_BYTES:])


# --- MACs ---------------------------------------------------------------------------


def des_mac(key: bytes, data: bytes, padding: int = PADDING_METHOD_2) -> bytes:
    """ISO/IEC 9797-1 MAC algorithm 1 with single DES and IV zero (the 8-byte CBC-MAC).

    Single DES runs as TDES with the key repeated (K || K), which is DES."""
    _check_length("mac key", key, DES_KEY_BYTES)
    if padding == PADDING_METHOD_1:
        padded = _mac.pad_iso9797_1(data, BLOCK_BYTES)
    elif padding == PADDING_METHOD_2:
        padded = _mac.pad_iso9797_2(data, BLOCK_BYTES)
    else:
        raise PurseCryptoError(f"padding method {padding} is not 1 or 2")
    return _tools.encrypt_tdes_cbc(key + key, bytes(BLOCK_BYTES), padded)[-BLOCK_BYTES:]


def purse_mac(key: bytes, data: bytes) -> bytes:
    """The 4-byte MAC the purse exchanges: leftmost 4 bytes of `des_mac`, padding 2."""
    return des_mac(key, data)[:MAC_BYTES]


def mac_equal(expected: bytes, presented: bytes) -> bool:
    """Whether two MACs are equal, compared in constant time."""
    return hmac.compare_digest(expected, presented)


@dataclass(frozen=True, slots=True)
class PurchaseData:
    """What the purchase MACs and TAC are computed over (JR/T 0025 purchase transaction)."""

    amount_fen: int
    transaction_type: int
    terminal_id: bytes
    terminal_transaction_number: int
    date: bytes
    time: bytes

    def __post_init__(self) -> None:
        _uint("amount_fen", self.amount_fen, AMOUNT_BYTES)
        if self.transaction_type not in (TRANSACTION_TYPE_PURCHASE, TRANSACTION_TYPE_COMPOSITE):
            raise PurseCryptoError("transaction_type is not purchase (06) or composite (09)")
        _check_length("terminal_id", self.terminal_id, TERMINAL_ID_BYTES)
        _uint("terminal_transaction_number", self.terminal_transaction_number, 4)
        _check_length("date", self.date, DATE_BYTES)
        _check_length("time", self.time, TIME_BYTES)

    def mac1_input(self) -> bytes:
        """amount 4 || type 1 || terminal id 6 || date 4 || time 3."""
        return self._amount_type_terminal() + self.date + self.time

    def mac2_input(self) -> bytes:
        """amount 4."""
        return self.amount_fen.to_bytes(AMOUNT_BYTES, "big")

    def tac_input(self) -> bytes:
        """amount 4 || type 1 || terminal id 6 || terminal transaction number 4 || date 4 ||
        time 3."""
        ttn = self.terminal_transaction_number.to_bytes(TERMINAL_TRANSACTION_NUMBER_BYTES, "big")
        return self._amount_type_terminal() + ttn + self.date + self.time

    def _amount_type_terminal(self) -> bytes:
        amount = self.amount_fen.to_bytes(AMOUNT_BYTES, "big")
        return amount + bytes([self.transaction_type]) + self.terminal_id


@dataclass(frozen=True, slots=True)
class LoadData:
    """What the load MACs and TAC are computed over (JR/T 0025 load transaction)."""

    old_balance_fen: int
    amount_fen: int
    online_counter: int
    terminal_id: bytes
    date: bytes
    time: bytes

    def __post_init__(self) -> None:
        signed_balance_bytes(self.old_balance_fen)
        _uint("amount_fen", self.amount_fen, AMOUNT_BYTES)
        _uint("online_counter", self.online_counter, COUNTER_BYTES)
        _check_length("terminal_id", self.terminal_id, TERMINAL_ID_BYTES)
        _check_length("date", self.date, DATE_BYTES)
        _check_length("time", self.time, TIME_BYTES)

    def mac1_input(self) -> bytes:
        """old balance 4 || amount 4 || type 02 || terminal id 6."""
        balance = signed_balance_bytes(self.old_balance_fen)
        return balance + self._amount_type_terminal()

    def mac2_input(self) -> bytes:
        """amount 4 || type 02 || terminal id 6 || date 4 || time 3."""
        return self._amount_type_terminal() + self.date + self.time

    def tac_input(self) -> bytes:
        """new balance 4 || online counter before the load 2 || amount 4 || type 02 ||
        terminal id 6 || date 4 || time 3."""
        new_balance = signed_balance_bytes(self.old_balance_fen + self.amount_fen)
        counter = self.online_counter.to_bytes(COUNTER_BYTES, "big")
        return new_balance + counter + self._amount_type_terminal() + self.date + self.time

    def _amount_type_terminal(self) -> bytes:
        amount = self.amount_fen.to_bytes(AMOUNT_BYTES, "big")
        return amount + bytes([TRANSACTION_TYPE_LOAD]) + self.terminal_id


def signed_balance_bytes(balance_fen: int) -> bytes:
    """A balance as the purse answers it: 4 bytes, big-endian two's complement, so an
    overdrawn purse (−limit ≤ balance < 0) reads as a negative number."""
    try:
        return balance_fen.to_bytes(BALANCE_BYTES, "big", signed=True)
    except OverflowError:
        raise PurseCryptoError("balance does not fit 4 signed bytes") from None


# --- Input checks -------------------------------------------------------------------


def _tdes(key: bytes, block: bytes) -> bytes:
    assert len(block) == BLOCK_BYTES, "a derivation encrypts exactly one block"
    return _tools.encrypt_tdes_ecb(key, block)


def _uint(field: str, value: int, size: int) -> bytes:
    if not 0 <= value < 1 << (8 * size):
        raise PurseCryptoError(f"{field} is outside 0..{(1 << (8 * size)) - 1}")
    return value.to_bytes(size, "big")


def _check_byte(field: str, value: int) -> None:
    _uint(field, value, 1)


def _check_length(field: str, value: bytes, length: int) -> None:
    if len(value) != length:
        raise PurseCryptoError(f"{field} is {len(value)} bytes, not {length}")
