"""The transit blacklist: card numbers a city's gates refuse, and how a gate keeps its copy.

A `Blacklist` is an immutable, versioned set of card numbers. A `BlacklistSource` is where
a gate pulls the current list from (the city's service; `BlacklistService` is the
in-memory one). `GateBlacklist` is a gate's own copy: it pulls on a schedule
(`BLACKLIST_REFRESH_S`), keeps the list it has when a pull fails, and reports a list
older than `BLACKLIST_MAX_AGE_S` as stale instead of using it silently for ever.

It must never block a tap: a gate checks the copy it holds, in memory; pulling happens
only in `refresh`, which the gate's control loop calls between taps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Protocol

from milletpay.core.clock import NS_PER_S
from milletpay.core.errors import MilletError

__all__ = [
    "BLACKLIST_CARDS_MAX",
    "BLACKLIST_MAX_AGE_S",
    "BLACKLIST_REFRESH_S",
    "CARD_NUMBER_BYTES",
    "Blacklist",
    "BlacklistError",
    "BlacklistService",
    "BlacklistSource",
    "BlacklistStatus",
    "BlacklistUnavailable",
    "GateBlacklist",
]

#: A gate pulls the list this often (the timer of "gates pull blacklists on a timer").
BLACKLIST_REFRESH_S: Final = 15 * 60
#: A list older than this (since its last successful pull) is reported stale.
BLACKLIST_MAX_AGE_S: Final = 24 * 3600
#: The most card numbers one list may hold: it lives in every gate's memory.
BLACKLIST_CARDS_MAX: Final = 1_000_000
CARD_NUMBER_BYTES: Final = 10  # file 0x15's application serial number, 20 BCD digits


class BlacklistError(MilletError, ValueError):
    """A malformed list or card number; the message names what was wrong."""

    code = "blacklist_invalid"


class BlacklistUnavailable(MilletError):
    """A pull that failed: the service could not be reached or answered nothing usable."""

    code = "blacklist_unavailable"


def _check_card_number(card_number: bytes) -> None:
    if len(card_number) != CARD_NUMBER_BYTES:
        raise BlacklistError(f"card_number is {len(card_number)} bytes, not {CARD_NUMBER_BYTES}")


@dataclass(frozen=True, slots=True)
class Blacklist:
    """One version of a city's blacklist: the card numbers its gates refuse."""

    version: int
    cards: frozenset[bytes] = frozenset()

    def __post_init__(self) -> None:
        if self.version < 0:
            raise BlacklistError(f"version must not be negative, got {self.version}")
        if len(self.cards) > BLACKLIST_CARDS_MAX:
            raise BlacklistError(
                f"a list holds at most {BLACKLIST_CARDS_MAX} cards, got {len(self.cards)}"
            )
        for card_number in self.cards:
            _check_card_number(card_number)

    def contains(self, card_number: bytes) -> bool:
        return card_number in self.cards


class BlacklistSource(Protocol):
    """Where a gate pulls the current list from; `BlacklistUnavailable` when it cannot."""

    def current(self) -> Blacklist: ...


class BlacklistService:
    """The city's blacklist in memory: every change bumps the version by one."""

    def __init__(self) -> None:
        self._list = Blacklist(version=0)

    def add(self, card_number: bytes) -> Blacklist:
        _check_card_number(card_number)
        if card_number in self._list.cards:
            return self._list
        if len(self._list.cards) >= BLACKLIST_CARDS_MAX:
            raise BlacklistError(f"the list is full at {BLACKLIST_CARDS_MAX} cards")
        return self._replace(self._list.cards | {card_number})

    def remove(self, card_number: bytes) -> Blacklist:
        _check_card_number(card_number)
        if card_number not in self._list.cards:
            return self._list
        return self._replace(self._list.cards - {card_number})

    def current(self) -> Blacklist:
        return self._list

    def _replace(self, cards: frozenset[bytes]) -> Blacklist:
        self._list = Blacklist(self._list.version + 1, cards)
        return self._list


@dataclass(frozen=True, slots=True)
class BlacklistStatus:
    """What one `refresh` did, and the state of the copy after it."""

    version: int  # the version the gate now uses
    pulled: bool  # a pull was attempted (the refresh interval had elapsed)
    pull_failed: bool  # ...and it failed: the old list is kept
    age_s: int | None  # since the last successful pull; None: never pulled
    stale: bool  # never pulled, or older than BLACKLIST_MAX_AGE_S


class GateBlacklist:
    """A gate's copy of the list and its pull schedule."""

    def __init__(
        self,
        source: BlacklistSource,
        *,
        refresh_s: int = BLACKLIST_REFRESH_S,
        max_age_s: int = BLACKLIST_MAX_AGE_S,
    ) -> None:
        assert 0 < refresh_s < max_age_s
        self._source = source
        self._refresh_ns = refresh_s * NS_PER_S
        self._max_age_ns = max_age_s * NS_PER_S
        self._list = Blacklist(version=0)
        self._pulled_at_ns: int | None = None  # last successful pull
        self._tried_at_ns: int | None = None  # last attempt, successful or not
        self.failed_pulls = 0

    @property
    def version(self) -> int:
        return self._list.version

    def contains(self, card_number: bytes) -> bool:
        return self._list.contains(card_number)

    def refresh(self, now_ns: int) -> BlacklistStatus:
        """Pull when the refresh interval has elapsed since the last attempt; a failed
        pull keeps the list the gate has and is retried at the next interval. A newer
        list replaces the copy; an older version than the one held is ignored."""
        due = self._tried_at_ns is None or now_ns - self._tried_at_ns >= self._refresh_ns
        failed = False
        if due:
            self._tried_at_ns = now_ns
            try:
                pulled = self._source.current()
            except BlacklistUnavailable:
                failed = True
                self.failed_pulls += 1
            else:
                if pulled.version >= self._list.version:
                    self._list = pulled
                self._pulled_at_ns = now_ns
        return BlacklistStatus(
            version=self._list.version,
            pulled=due,
            pull_failed=failed,
            age_s=self.age_s(now_ns),
            stale=self.is_stale(now_ns),
        )

    def age_s(self, now_ns: int) -> int | None:
        if self._pulled_at_ns is None:
            return None
        return (now_ns - self._pulled_at_ns) // NS_PER_S

    def is_stale(self, now_ns: int) -> bool:
        """Never pulled, or last pulled longer than the maximum age ago."""
        if self._pulled_at_ns is None:
            return True
        return now_ns - self._pulled_at_ns > self._max_age_ns
