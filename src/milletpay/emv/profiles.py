"""Cryptogram versions as data: how a card of each version derives keys and builds its
cryptograms. `crypto` reads a profile; it never branches on a version number.

Each entry names the ICC master key derivation, the session key method for the
application cryptogram and for the ARPC, the data elements in the order they are
concatenated, how much of the Issuer Application Data (9F10) goes in, the padding and the
ARPC method. The Visa, Mastercard-style and Interac entries follow pyemv's `cvn` module
(knovichikhin/pyemv, pyemv/cvn.py), which documents them with known answers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType

from milletpay.core.errors import MilletError


class KeyDerivation(Enum):
    """ICC master key from the issuer master key (EMV 4.3 Book 2, Annex A1.4)."""

    OPTION_A = "A"  # PAN and PSN, 16 digits
    OPTION_B = "B"  # SHA-1 of PAN and PSN, for PANs over 16 digits


class SessionKey(Enum):
    """Diversification value R for the EMV common session key (Book 2, Annex A1.3)."""

    NONE = "none"  # the ICC master key itself
    ATC = "atc"  # R = ATC || 00 00 00 00 00 00
    ATC_UN = "atc_un"  # R = ATC || 00 00 || unpredictable number (Mastercard style)


class Padding(Enum):
    """ISO/IEC 9797-1 padding of the cryptogram data."""

    METHOD_1 = 1  # zeros to a whole block
    METHOD_2 = 2  # 80, then zeros to a whole block


class ArpcMethod(Enum):
    """EMV 4.3 Book 2 §8.2."""

    METHOD_1 = 1  # 8 bytes: TDES(SK)[ARQC XOR (ARC || 00...)], ARC 2 bytes
    METHOD_2 = 2  # 4 bytes: MAC(SK)[ARQC || CSU || proprietary data], CSU 4 bytes


# Bytes of the issuer's answer each ARPC method takes (ARC for 1, CSU for 2).
ARPC_RESPONSE_BYTES: Mapping[ArpcMethod, int] = MappingProxyType(
    {ArpcMethod.METHOD_1: 2, ArpcMethod.METHOD_2: 4}
)

# The EMV minimum data set for the application cryptogram, in order
# (EMV 4.3 Book 2 §8.1.1, Table 26; pyemv/ac.py generate_ac).
MINIMUM_DATA_SET: tuple[str, ...] = (
    "9F02",
    "9F03",
    "9F1A",
    "95",
    "5F2A",
    "9A",
    "9C",
    "9F37",
    "82",
    "9F36",
)


@dataclass(frozen=True, slots=True)
class IadSlice:
    """The part of 9F10 that goes into the cryptogram data: bytes [start, start+length),
    or the whole of it when `length` is None."""

    start: int = 0
    length: int | None = None


@dataclass(frozen=True, slots=True)
class CryptogramProfile:
    name: str
    cvn: int  # the cryptogram version number as the issuer application data carries it
    key_derivation: KeyDerivation
    ac_session_key: SessionKey
    data_tags: tuple[str, ...]
    iad: IadSlice | None  # None: 9F10 is not part of the cryptogram data
    padding: Padding
    arpc_method: ArpcMethod
    arpc_session_key: SessionKey


class UnknownProfileError(MilletError):
    code = "cryptogram_profile_unknown"


_PROFILES: tuple[CryptogramProfile, ...] = (
    # Millet Pay's UnionPay-style network profile, modelled on the PBOC 2.0/3.0 CVN 01
    # data set: the minimum data set and the card verification results of 9F10 (its
    # bytes 3..6: length byte and CVR, as in the PBOC IAD layout). It uses the EMV common
    # session key; a certified PBOC card's own session key derivation is not reproduced.
    CryptogramProfile(
        name="unionpay-cvn01",
        cvn=0x01,
        key_derivation=KeyDerivation.OPTION_A,
        ac_session_key=SessionKey.ATC,
        data_tags=MINIMUM_DATA_SET,
        iad=IadSlice(3, 4),
        padding=Padding.METHOD_2,
        arpc_method=ArpcMethod.METHOD_1,
        arpc_session_key=SessionKey.ATC,
    ),
    # pyemv.cvn.VisaCVN10: no session key, CVR (IAD bytes 3..6), ISO 9797-1 method 1.
    CryptogramProfile(
        name="visa-cvn10",
        cvn=0x0A,
        key_derivation=KeyDerivation.OPTION_A,
        ac_session_key=SessionKey.NONE,
        data_tags=MINIMUM_DATA_SET,
        iad=IadSlice(3, 4),
        padding=Padding.METHOD_1,
        arpc_method=ArpcMethod.METHOD_1,
        arpc_session_key=SessionKey.NONE,
    ),
    # pyemv.cvn.VisaCVN18: option B, common session key, the whole IAD, ARPC method 2.
    CryptogramProfile(
        name="visa-cvn18",
        cvn=0x12,
        key_derivation=KeyDerivation.OPTION_B,
        ac_session_key=SessionKey.ATC,
        data_tags=MINIMUM_DATA_SET,
        iad=IadSlice(),
        padding=Padding.METHOD_2,
        arpc_method=ArpcMethod.METHOD_2,
        arpc_session_key=SessionKey.ATC,
    ),
    # pyemv.cvn.MasterCardCVN16 (M/Chip): Mastercard session key, CVR (IAD bytes 2..7),
    # ARPC method 1 under the ICC master key.
    CryptogramProfile(
        name="mchip-cvn16",
        cvn=0x10,
        key_derivation=KeyDerivation.OPTION_A,
        ac_session_key=SessionKey.ATC_UN,
        data_tags=MINIMUM_DATA_SET,
        iad=IadSlice(2, 6),
        padding=Padding.METHOD_2,
        arpc_method=ArpcMethod.METHOD_1,
        arpc_session_key=SessionKey.NONE,
    ),
    # pyemv.cvn.MasterCardCVN20 (M/Chip): common session key for AC and ARPC.
    CryptogramProfile(
        name="mchip-cvn20",
        cvn=0x14,
        key_derivation=KeyDerivation.OPTION_A,
        ac_session_key=SessionKey.ATC,
        data_tags=MINIMUM_DATA_SET,
        iad=IadSlice(2, 6),
        padding=Padding.METHOD_2,
        arpc_method=ArpcMethod.METHOD_1,
        arpc_session_key=SessionKey.ATC,
    ),
    # pyemv.cvn.InteracCVN133: Mastercard session key, the whole IAD.
    CryptogramProfile(
        name="interac-cvn133",
        cvn=0x85,
        key_derivation=KeyDerivation.OPTION_A,
        ac_session_key=SessionKey.ATC_UN,
        data_tags=MINIMUM_DATA_SET,
        iad=IadSlice(),
        padding=Padding.METHOD_2,
        arpc_method=ArpcMethod.METHOD_1,
        arpc_session_key=SessionKey.ATC_UN,
    ),
)

PROFILES: Mapping[str, CryptogramProfile] = MappingProxyType({p.name: p for p in _PROFILES})
assert len(PROFILES) == len(_PROFILES), "a profile name is listed twice"


def profile(name: str) -> CryptogramProfile:
    """The profile called `name`; `UnknownProfileError` naming the known ones otherwise."""
    found = PROFILES.get(name)
    if found is None:
        raise UnknownProfileError(f"no cryptogram profile {name!r}; known: {sorted(PROFILES)}")
    return found
