"""Real-name KYC tiers of a payment-institution account (PBOC, from 2016-07-01).

One data table (`TIERS`) holds the rules; `tier_for` and `allows` are pure functions
over it. Limits are integer fen of *balance payments*; nothing here touches storage.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from enum import StrEnum

from milletpay.core.clock import NS_PER_S

#: China Standard Time is UTC+8 all year: "calendar year" limits turn over at its midnight.
CST_OFFSET_S = 8 * 3600
SECONDS_PER_DAY = 86_400
_UNIX_EPOCH_DATE = datetime.date(1970, 1, 1)


class LimitPeriod(StrEnum):
    LIFETIME = "lifetime"  # over the account's whole life
    CALENDAR_YEAR = "calendar_year"  # 1 January to 31 December, China Standard Time


class Channel(StrEnum):
    """The external sources that can verify a user's identity; each counts once."""

    BANK_CARD = "bank_card"
    PUBLIC_SECURITY_ID = "public_security_id"
    SOCIAL_SECURITY = "social_security"
    TELECOM = "telecom"
    TAX = "tax"
    HOUSING_FUND = "housing_fund"
    EDUCATION = "education"
    FACE_TO_FACE = "face_to_face"


@dataclass(frozen=True, slots=True)
class KycTier:
    level: int  # 1 = Class I, 2 = Class II, 3 = Class III
    name: str
    channels_min: int  # remote verification channels needed
    face_to_face_suffices: bool
    limit_fen: int  # balance payments allowed per `period`
    period: LimitPeriod
    may_invest: bool


TIERS: tuple[KycTier, ...] = (
    KycTier(1, "Class I", 1, False, 100_000, LimitPeriod.LIFETIME, False),
    KycTier(2, "Class II", 3, True, 10_000_000, LimitPeriod.CALENDAR_YEAR, False),
    KycTier(3, "Class III", 5, True, 20_000_000, LimitPeriod.CALENDAR_YEAR, True),
)
TIER_BY_LEVEL = {tier.level: tier for tier in TIERS}
CLASS_III = TIER_BY_LEVEL[3]


def tier_for(verified_channels: int, face_to_face: bool) -> KycTier | None:
    """The highest tier reached with `verified_channels` remote channels (face-to-face
    not counted among them) and an optional face-to-face check; None below Class I."""
    assert verified_channels >= 0
    reached = [
        tier
        for tier in TIERS
        if verified_channels >= tier.channels_min or (face_to_face and tier.face_to_face_suffices)
    ]
    return max(reached, key=lambda tier: tier.level) if reached else None


def allows(tier: KycTier, spent_fen: int, amount_fen: int) -> bool:
    """Whether a balance payment of `amount_fen` fits, `spent_fen` already spent this period."""
    assert spent_fen >= 0 and amount_fen > 0
    return spent_fen + amount_fen <= tier.limit_fen


def limit_period_of(tier: KycTier, instant_ns: int) -> int | None:
    """The period a payment at `instant_ns` counts in: its CST year, or None for lifetime."""
    if tier.period is LimitPeriod.LIFETIME:
        return None
    days = (instant_ns // NS_PER_S + CST_OFFSET_S) // SECONDS_PER_DAY
    return (_UNIX_EPOCH_DATE + datetime.timedelta(days=days)).year


def tier_of_channels(channels: frozenset[Channel]) -> KycTier | None:
    """The tier a set of verified channels reaches; face-to-face is not a remote channel."""
    remote = channels - {Channel.FACE_TO_FACE}
    return tier_for(len(remote), Channel.FACE_TO_FACE in channels)
