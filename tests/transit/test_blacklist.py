"""The blacklist: a versioned set of card numbers, and a gate's copy pulled on a timer."""

from __future__ import annotations

import pytest

from milletpay.core.clock import NS_PER_S
from milletpay.transit.blacklist import (
    BLACKLIST_MAX_AGE_S,
    BLACKLIST_REFRESH_S,
    Blacklist,
    BlacklistError,
    BlacklistService,
    BlacklistUnavailable,
    GateBlacklist,
)

CARD_A = bytes.fromhex("31040000000012345678")
CARD_B = bytes.fromhex("31040000000087654321")
T0 = 1_795_000_000 * NS_PER_S
REFRESH_NS = BLACKLIST_REFRESH_S * NS_PER_S


class FlakySource:
    """A source whose pulls fail while `down` is set."""

    def __init__(self, service: BlacklistService) -> None:
        self.service = service
        self.down = False
        self.pulls = 0

    def current(self) -> Blacklist:
        self.pulls += 1
        if self.down:
            raise BlacklistUnavailable("the city's service did not answer")
        return self.service.current()


def test_every_change_bumps_the_version_and_a_no_op_does_not() -> None:
    service = BlacklistService()
    assert service.current() == Blacklist(0)
    assert service.add(CARD_A).version == 1
    assert service.add(CARD_A).version == 1
    assert service.add(CARD_B).version == 2
    listed = service.remove(CARD_A)
    assert listed.version == 3
    assert not listed.contains(CARD_A) and listed.contains(CARD_B)
    assert service.remove(CARD_A).version == 3


def test_a_card_number_that_is_not_ten_bytes_is_refused() -> None:
    with pytest.raises(BlacklistError, match="card_number is 9 bytes"):
        BlacklistService().add(CARD_A[:9])
    with pytest.raises(BlacklistError, match="card_number"):
        Blacklist(1, frozenset({b"short"}))
    with pytest.raises(BlacklistError, match="version"):
        Blacklist(-1)


def test_the_first_refresh_pulls_and_the_next_waits_for_the_interval() -> None:
    service = BlacklistService()
    service.add(CARD_A)
    source = FlakySource(service)
    copy = GateBlacklist(source)
    status = copy.refresh(T0)
    assert (status.pulled, status.version, status.stale) == (True, 1, False)
    service.add(CARD_B)
    assert not copy.refresh(T0 + REFRESH_NS - 1).pulled
    assert not copy.contains(CARD_B)
    assert copy.refresh(T0 + REFRESH_NS).pulled  # exactly the interval: due
    assert copy.contains(CARD_B) and copy.version == 2
    assert source.pulls == 2


def test_a_failed_pull_keeps_the_old_list_and_is_retried_at_the_next_interval() -> None:
    service = BlacklistService()
    service.add(CARD_A)
    source = FlakySource(service)
    copy = GateBlacklist(source)
    copy.refresh(T0)
    service.add(CARD_B)
    source.down = True
    status = copy.refresh(T0 + REFRESH_NS)
    assert status.pulled and status.pull_failed
    assert status.version == 1 and copy.contains(CARD_A) and not copy.contains(CARD_B)
    assert status.age_s == BLACKLIST_REFRESH_S and not status.stale
    assert copy.failed_pulls == 1
    source.down = False
    assert not copy.refresh(T0 + REFRESH_NS + NS_PER_S).pulled  # not before the interval
    assert copy.refresh(T0 + 2 * REFRESH_NS).version == 2


def test_a_list_older_than_the_maximum_age_is_reported_stale() -> None:
    source = FlakySource(BlacklistService())
    copy = GateBlacklist(source)
    assert copy.is_stale(T0)  # never pulled
    copy.refresh(T0)
    source.down = True
    at_limit = T0 + BLACKLIST_MAX_AGE_S * NS_PER_S
    assert not copy.refresh(at_limit).stale  # exactly the maximum age: still usable
    status = copy.refresh(at_limit + REFRESH_NS)
    assert status.stale and status.pull_failed
    assert status.age_s == BLACKLIST_MAX_AGE_S + BLACKLIST_REFRESH_S
    source.down = False
    assert not copy.refresh(at_limit + 2 * REFRESH_NS).stale


def test_an_older_version_than_the_one_held_is_ignored() -> None:
    lists = iter([Blacklist(5, frozenset({CARD_A})), Blacklist(4)])

    class Rewinding:
        def current(self) -> Blacklist:
            return next(lists)

    copy = GateBlacklist(Rewinding())
    copy.refresh(T0)
    assert copy.refresh(T0 + REFRESH_NS).version == 5
    assert copy.contains(CARD_A)
