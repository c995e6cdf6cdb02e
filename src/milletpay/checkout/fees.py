"""The merchant discount rate (MDR): what Millet Pay keeps of a merchant's takings, by
merchant category code (MCC), as data.

Rates are in basis points (1/100 of a percent) and are the platform's configuration, not
published fact: 0.6% is the common rate of Chinese wallet payments, with lower rates for
everyday categories and none for charities. A fee is rounded to the fen, half up, and is
never more than the amount it is taken from. Nothing here touches storage.
"""

from __future__ import annotations

import re
from typing import Final

BPS_PER_UNIT: Final = 10_000
DEFAULT_MDR_BPS: Final = 60

#: MCC -> rate in basis points, where it differs from `DEFAULT_MDR_BPS`.
MDR_BPS_BY_MCC: Final[dict[str, int]] = {
    "4111": 20,  # local and suburban commuter transport
    "4900": 20,  # utilities
    "5411": 38,  # grocery stores and supermarkets
    "5499": 38,  # convenience stores
    "5541": 38,  # service stations
    "5812": 60,  # restaurants
    "5815": 100,  # digital goods: media
    "5816": 100,  # digital goods: games
    "5817": 100,  # digital goods: applications
    "5818": 100,  # digital goods: large digital goods merchant
    "8211": 0,  # schools
    "8398": 0,  # charitable organizations
}
#: The MCCs of digital goods (the only merchants coins may pay).
DIGITAL_GOODS_MCCS: Final = frozenset({"5815", "5816", "5817", "5818"})

_MCC: Final = re.compile(r"\A[0-9]{4}\Z")


def is_mcc(text: object) -> bool:
    """Four digits: ISO 18245's format (the assigned ranges are not checked)."""
    return isinstance(text, str) and _MCC.match(text) is not None


def mdr_bps(mcc: str) -> int:
    assert is_mcc(mcc), mcc
    return MDR_BPS_BY_MCC.get(mcc, DEFAULT_MDR_BPS)


def fee_fen(amount_fen: int, mcc: str) -> int:
    """The merchant discount on `amount_fen` at `mcc`'s rate, half a fen rounded up."""
    assert amount_fen >= 0
    fee = (amount_fen * mdr_bps(mcc) * 2 + BPS_PER_UNIT) // (2 * BPS_PER_UNIT)
    assert 0 <= fee <= amount_fen
    return fee
