"""Fixtures for identity tests: a service on each database engine, and sample ID numbers.

Sample resident ID numbers are public examples, not people: `11010519491231002X` is the
worked example printed in the standard GB 11643-1999, `360426199101010071` is the example
in python-stdnum's `stdnum.cn.ric`, and the rest are made here by `make_national_id`
(region 110105, a chosen birth date and sequence, the check digit from stdnum).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from stdnum.cn import ric

from milletpay.core.clock import ManualClock
from milletpay.core.keyring import KeyRing
from milletpay.identity import PIN_HASHING_FAST, IdentityService, SimulatedSms
from milletpay.store import create_engine, upgrade

GB_11643_EXAMPLE = "11010519491231002X"
STDNUM_EXAMPLE = "360426199101010071"


def make_national_id(birth_yyyymmdd: str, sequence: int, region: str = "110105") -> str:
    """A number with a valid check digit (GB 11643 MOD 11-2, computed by stdnum)."""
    body = f"{region}{birth_yyyymmdd}{sequence:03d}"
    return body + ric.calc_check_digit(body + "0")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def sms() -> SimulatedSms:
    return SimulatedSms()


@pytest.fixture
def keyring() -> KeyRing:
    return KeyRing.generate()


@pytest.fixture
def service(
    database_url: str, keyring: KeyRing, clock: ManualClock, sms: SimulatedSms
) -> Iterator[IdentityService]:
    engine = create_engine(database_url)
    upgrade(engine)
    yield IdentityService(engine, keyring, clock, sms, pin_hashing=PIN_HASHING_FAST)
    engine.dispose()
