"""EMV cryptography: ICC master keys, session keys, ARQC / ARPC, CVN2 and PIN blocks.

The derivations and cryptograms follow EMV 4.3 Book 2 (Annex A1.3, A1.4, §8.1, §8.2) and
are computed by pyemv; what varies between cryptogram versions is read from a
`profiles.CryptogramProfile`, never decided here by version number. Verification compares
in constant time (`hmac.compare_digest`). Nothing here logs, stores or returns a key in a
message; a refusal (`EmvCryptoError`) names the field that was wrong, never its value.

pyemv calls `cryptography`'s two-key TripleDES, which recent `cryptography` releases
report with `CryptographyDeprecationWarning` (from `pyemv.tools` and `pyemv.mac`).
Double-length TDES is what EMV keys are; the warnings are filtered for the tests in
pyproject.toml.
"""

from __future__ import annotations

import hmac
import string
import warnings
from collections.abc import Callable, Mapping
from types import MappingProxyType

from pyemv import ac as _ac
from pyemv import kd as _kd
from pyemv import tools as _tools

from milletpay.core.errors import MilletError
from milletpay.emv.profiles import (
    ARPC_RESPONSE_BYTES,
    ArpcMethod,
    CryptogramProfile,
    KeyDerivation,
    Padding,
    SessionKey,
)
from milletpay.emv.tags import TAGS

KEY_BYTES = 16  # double-length TDES: IMK, ICC MK, session keys, CVK, PIN keys
ARQC_BYTES = 8
PAN_DIGITS_MIN = 12
PAN_DIGITS_MAX = 19
PSN_DIGITS = 2
PIN_DIGITS_MIN = 4  # ISO 9564-1
PIN_DIGITS_MAX = 12
PIN_BLOCK_BYTES = 8
PIN_BLOCK_PAN_DIGITS_MIN = 13  # format 0 takes the 12 digits before the check digit
ARPC_PROPRIETARY_BYTES_MAX = 8  # method 2
CVV_DIGITS = 3
CVN2_SERVICE_CODE = "000"  # the code printed values are computed with


class EmvCryptoError(MilletError):
    """An input to a derivation or cryptogram is missing or malformed."""

    code = "emv_crypto_invalid"


# --- ICC master keys (Book 2, Annex A1.4) -------------------------------------------

_ICC_MK_DERIVATIONS: Mapping[KeyDerivation, Callable[[bytes, str, str], bytes]] = MappingProxyType(
    {
        KeyDerivation.OPTION_A: _kd.derive_icc_mk_a,
        KeyDerivation.OPTION_B: _kd.derive_icc_mk_b,
    }
)


def derive_icc_mk_a(imk: bytes, pan: str, psn: str = "00") -> bytes:
    """ICC master key, option A: TDES(IMK)[Y || ~Y], Y the rightmost 16 digits of PAN||PSN."""
    return derive_icc_master_key(KeyDerivation.OPTION_A, imk, pan, psn)


def derive_icc_mk_b(imk: bytes, pan: str, psn: str = "00") -> bytes:
    """ICC master key, option B: for PANs over 16 digits, Y from SHA-1 of PAN||PSN
    decimalized; for shorter PANs it equals option A."""
    return derive_icc_master_key(KeyDerivation.OPTION_B, imk, pan, psn)


def derive_icc_master_key(option: KeyDerivation, imk: bytes, pan: str, psn: str = "00") -> bytes:
    _check_key("imk", imk)
    _check_digits("pan", pan, PAN_DIGITS_MIN, PAN_DIGITS_MAX)
    _check_digits("psn", psn, PSN_DIGITS, PSN_DIGITS)
    return _ICC_MK_DERIVATIONS[option](imk, pan, psn)


def icc_master_key(profile: CryptogramProfile, imk: bytes, pan: str, psn: str = "00") -> bytes:
    """The card's AC master key as the profile derives it from the issuer's IMK."""
    return derive_icc_master_key(profile.key_derivation, imk, pan, psn)


# --- Session keys (Book 2, Annex A1.3) ----------------------------------------------


def common_session_key(icc_mk: bytes, atc: bytes) -> bytes:
    """EMV common session key with R = ATC || 00 00 00 00 00 00."""
    _check_key("icc_mk", icc_mk)
    _check_value("9F36", atc)
    return _kd.derive_common_sk(icc_mk, atc + bytes(6))


def _r_atc(data: Mapping[str, bytes]) -> bytes:
    return _tag(data, "9F36") + bytes(6)


def _r_atc_un(data: Mapping[str, bytes]) -> bytes:
    return _tag(data, "9F36") + bytes(2) + _tag(data, "9F37")


# The diversification value R each method takes from the transaction data; NONE has none.
_DIVERSIFIERS: Mapping[SessionKey, Callable[[Mapping[str, bytes]], bytes] | None] = (
    MappingProxyType({SessionKey.NONE: None, SessionKey.ATC: _r_atc, SessionKey.ATC_UN: _r_atc_un})
)


def session_key(method: SessionKey, icc_mk: bytes, data: Mapping[str, bytes]) -> bytes:
    """The key that `method` derives from the ICC master key for this transaction."""
    _check_key("icc_mk", icc_mk)
    diversifier = _DIVERSIFIERS[method]
    if diversifier is None:
        return icc_mk
    return _kd.derive_common_sk(icc_mk, diversifier(data))


# --- Application cryptograms (Book 2, §8.1) -----------------------------------------

_PADDINGS: Mapping[Padding, _ac.PaddingType] = MappingProxyType(
    {Padding.METHOD_1: _ac.PaddingType.VISA, Padding.METHOD_2: _ac.PaddingType.EMV}
)


def cryptogram_data(profile: CryptogramProfile, data: Mapping[str, bytes]) -> bytes:
    """The profile's data elements in order, then its part of the IAD (9F10)."""
    out = b"".join(_tag(data, tag) for tag in profile.data_tags)
    if profile.iad is None:
        return out
    iad = _tag(data, "9F10")
    end = len(iad) if profile.iad.length is None else profile.iad.start + profile.iad.length
    if end > len(iad):
        raise EmvCryptoError(
            f"9F10 is {len(iad)} bytes; profile {profile.name} reads bytes up to {end}"
        )
    return out + iad[profile.iad.start : end]


def generate_ac(profile: CryptogramProfile, icc_mk: bytes, data: Mapping[str, bytes]) -> bytes:
    """The 8-byte application cryptogram (ARQC, TC or AAC: the same computation) over
    `data`, a mapping of tag ("9F02") to value, as the card of this profile computes it."""
    sk = session_key(profile.ac_session_key, icc_mk, data)
    return _ac.generate_ac(
        sk, cryptogram_data(profile, data), _PADDINGS[profile.padding], ARQC_BYTES
    )


def verify_arqc(
    profile: CryptogramProfile, icc_mk: bytes, data: Mapping[str, bytes], arqc: bytes
) -> bool:
    """Whether `arqc` is this card's cryptogram over `data`, compared in constant time."""
    return hmac.compare_digest(generate_ac(profile, icc_mk, data), arqc)


# --- Authorisation response cryptograms (Book 2, §8.2) ------------------------------


def arpc_method_1(sk: bytes, arqc: bytes, arc: bytes) -> bytes:
    """8-byte ARPC: TDES(SK)[ARQC XOR (ARC || 00 00 00 00 00 00)]."""
    _check_key("session key", sk)
    _check_length("arqc", arqc, ARQC_BYTES)
    _check_length("arc", arc, ARPC_RESPONSE_BYTES[ArpcMethod.METHOD_1])
    return _ac.generate_arpc_1(sk, arqc, arc)


def arpc_method_2(sk: bytes, arqc: bytes, csu: bytes, proprietary: bytes = b"") -> bytes:
    """4-byte ARPC: ISO 9797-1 MAC algorithm 3 over ARQC || CSU || proprietary data."""
    _check_key("session key", sk)
    _check_length("arqc", arqc, ARQC_BYTES)
    _check_length("csu", csu, ARPC_RESPONSE_BYTES[ArpcMethod.METHOD_2])
    if len(proprietary) > ARPC_PROPRIETARY_BYTES_MAX:
        raise EmvCryptoError(f"proprietary data is over {ARPC_PROPRIETARY_BYTES_MAX} bytes")
    return _ac.generate_arpc_2(sk, arqc, csu, proprietary)


def _arpc_1(sk: bytes, arqc: bytes, response: bytes, proprietary: bytes) -> bytes:
    if proprietary:
        raise EmvCryptoError("ARPC method 1 takes no proprietary data")
    return arpc_method_1(sk, arqc, response)


_ARPC_METHODS: Mapping[ArpcMethod, Callable[[bytes, bytes, bytes, bytes], bytes]] = (
    MappingProxyType({ArpcMethod.METHOD_1: _arpc_1, ArpcMethod.METHOD_2: arpc_method_2})
)


def generate_arpc(
    profile: CryptogramProfile,
    icc_mk: bytes,
    data: Mapping[str, bytes],
    arqc: bytes,
    response: bytes,
    proprietary: bytes = b"",
) -> bytes:
    """The issuer's ARPC for `arqc`; `response` is the ARC (method 1, 2 bytes) or the CSU
    (method 2, 4 bytes). `data` gives the ATC (and UN) the session key needs."""
    sk = session_key(profile.arpc_session_key, icc_mk, data)
    return _ARPC_METHODS[profile.arpc_method](sk, arqc, response, proprietary)


def verify_arpc(
    profile: CryptogramProfile,
    icc_mk: bytes,
    data: Mapping[str, bytes],
    arqc: bytes,
    response: bytes,
    arpc: bytes,
    proprietary: bytes = b"",
) -> bool:
    """Whether `arpc` answers `arqc` with `response` (the card's check), in constant time."""
    expected = generate_arpc(profile, icc_mk, data, arqc, response, proprietary)
    return hmac.compare_digest(expected, arpc)


# --- Card verification values -------------------------------------------------------


def cvv(cvk: bytes, pan: str, expiry_yymm: str, service_code: str) -> str:
    """The 3-digit card verification value (Visa CVV algorithm, also Mastercard's CVC and
    UnionPay's CVN): DES and TDES under the CVK pair over PAN || expiry || service code,
    then decimalized (digits first, then A-F as 0-5)."""
    _check_key("cvk", cvk)
    _check_digits("pan", pan, PAN_DIGITS_MIN, PAN_DIGITS_MAX)
    _check_digits("expiry_yymm", expiry_yymm, 4, 4)
    _check_digits("service_code", service_code, 3, 3)
    block = (pan + expiry_yymm + service_code).ljust(32, "0")
    key_a = cvk[:8]
    step = _tools.encrypt_tdes_ecb(key_a + key_a, bytes.fromhex(block[:16]))  # single DES
    step = _tools.xor(step, bytes.fromhex(block[16:]))
    step = _tools.encrypt_tdes_ecb(cvk, step)
    nibbles = step.hex().upper()
    digits = [c for c in nibbles if c in string.digits]
    digits += [str(int(c, 16) - 10) for c in nibbles if c not in string.digits]
    return "".join(digits[:CVV_DIGITS])


def cvn2(cvk: bytes, pan: str, expiry_yymm: str) -> str:
    """The value printed on the card (CVN2 / CVV2): `cvv` with service code 000."""
    return cvv(cvk, pan, expiry_yymm, CVN2_SERVICE_CODE)


def verify_cvn2(cvk: bytes, pan: str, expiry_yymm: str, presented: str) -> bool:
    """Whether `presented` is the card's CVN2, compared in constant time."""
    return hmac.compare_digest(cvn2(cvk, pan, expiry_yymm).encode(), presented.encode())


# --- PIN blocks (ISO 9564-1 format 0) -----------------------------------------------


def pin_block_iso0(pin: str, pan: str) -> bytes:
    """The clear 8-byte format 0 PIN block: (0, length, PIN, F padding) XOR
    (0000 and the 12 PAN digits before the check digit)."""
    _check_digits("pin", pin, PIN_DIGITS_MIN, PIN_DIGITS_MAX)
    _check_digits("pan", pan, PIN_BLOCK_PAN_DIGITS_MIN, PAN_DIGITS_MAX)
    pin_field = bytes.fromhex(f"0{len(pin):X}" + pin.ljust(14, "F"))
    return _tools.xor(pin_field, _pan_field(pan))


def pin_from_block_iso0(pin_block: bytes, pan: str) -> str:
    """The PIN in a clear format 0 block; `EmvCryptoError` if the block is not one."""
    _check_length("pin_block", pin_block, PIN_BLOCK_BYTES)
    _check_digits("pan", pan, PIN_BLOCK_PAN_DIGITS_MIN, PAN_DIGITS_MAX)
    field = _tools.xor(pin_block, _pan_field(pan)).hex().upper()
    length = int(field[1], 16)
    if field[0] != "0" or not PIN_DIGITS_MIN <= length <= PIN_DIGITS_MAX:
        raise EmvCryptoError("pin_block is not an ISO 9564 format 0 block")
    pin, filler = field[2 : 2 + length], field[2 + length :]
    if not pin.isdigit() or filler != "F" * len(filler):
        raise EmvCryptoError("pin_block is not an ISO 9564 format 0 block")
    return pin


def encrypt_pin_block(pin_key: bytes, pin_block: bytes) -> bytes:
    """The PIN block under a double-length TDES PIN key (ECB, one block)."""
    _check_key("pin_key", pin_key)
    _check_length("pin_block", pin_block, PIN_BLOCK_BYTES)
    return _tools.encrypt_tdes_ecb(pin_key, pin_block)


def verify_pin(pin_key: bytes, encrypted_pin_block: bytes, pan: str, pin: str) -> bool:
    """Whether the encrypted format 0 block carries `pin` for `pan`: the expected block is
    encrypted and compared in constant time, so no clear PIN block is ever produced from
    the one received."""
    expected = encrypt_pin_block(pin_key, pin_block_iso0(pin, pan))
    return hmac.compare_digest(expected, encrypted_pin_block)


def _pan_field(pan: str) -> bytes:
    return bytes.fromhex("0000" + pan[-13:-1])


# --- Input checks -------------------------------------------------------------------


def _tag(data: Mapping[str, bytes], tag: str) -> bytes:
    value = data.get(tag)
    if value is None:
        raise EmvCryptoError(f"tag {tag} ({TAGS[tag].name}) is missing")
    _check_value(tag, value)
    return value


def _check_value(tag: str, value: bytes) -> None:
    info = TAGS[tag]
    if not info.length_min <= len(value) <= info.length_max:
        raise EmvCryptoError(
            f"tag {tag} ({info.name}) is {len(value)} bytes, "
            f"not {info.length_min}..{info.length_max}"
        )


def _check_key(field: str, key: bytes) -> None:
    if len(key) != KEY_BYTES:
        raise EmvCryptoError(f"{field} is {len(key)} bytes, not {KEY_BYTES}")


def _check_length(field: str, value: bytes, length: int) -> None:
    if len(value) != length:
        raise EmvCryptoError(f"{field} is {len(value)} bytes, not {length}")


def _check_digits(field: str, value: str, digits_min: int, digits_max: int) -> None:
    if not (digits_min <= len(value) <= digits_max and value.isascii() and value.isdigit()):
        raise EmvCryptoError(f"{field} must be {digits_min} to {digits_max} ASCII digits")


def quiet_pyemv_warnings() -> None:
    """pyemv runs EMV's two-key triple DES, which `cryptography` warns it will move; the
    keys are EMV's, not ours to change, and the warning is no news to an operator."""
    warnings.filterwarnings("ignore", message=".*TripleDES", module="pyemv")
