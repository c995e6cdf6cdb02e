"""The China Standard Time periods the wallet counts in: days for daily limits, years
for the tier limit, calendar months for statements. Pure; instants are nanoseconds."""

from __future__ import annotations

import datetime

from milletpay.core.clock import NS_PER_S
from milletpay.identity.kyc import CST_OFFSET_S, SECONDS_PER_DAY

_EPOCH = datetime.date(1970, 1, 1)


def _midnight_cst_ns(day: datetime.date) -> int:
    return ((day - _EPOCH).days * SECONDS_PER_DAY - CST_OFFSET_S) * NS_PER_S


def day_start_ns(instant_ns: int) -> int:
    """The CST midnight that starts the day of `instant_ns`."""
    day_s = SECONDS_PER_DAY * NS_PER_S
    return (instant_ns + CST_OFFSET_S * NS_PER_S) // day_s * day_s - CST_OFFSET_S * NS_PER_S


def year_start_ns(year: int) -> int:
    return _midnight_cst_ns(datetime.date(year, 1, 1))


def month_bounds_ns(year: int, month: int) -> tuple[int, int]:
    """[start, end) of a calendar month in CST."""
    first = datetime.date(year, month, 1)
    following = datetime.date(year + month // 12, month % 12 + 1, 1)
    return _midnight_cst_ns(first), _midnight_cst_ns(following)
