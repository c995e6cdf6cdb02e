"""Clocks: the only source of "now" for the platform.

Everything that depends on time takes a `Clock`, so that tests and the simulator
can move time by hand. Time is integer nanoseconds since the Unix epoch.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

NS_PER_S = 1_000_000_000


class Clock(Protocol):
    def now_ns(self) -> int:
        """Nanoseconds since the Unix epoch."""
        ...


class SystemClock:
    """The machine's wall clock."""

    def now_ns(self) -> int:
        return time.time_ns()


class ManualClock:
    """A clock that moves only when told to; safe to share between threads."""

    def __init__(self, start_ns: int = 1_700_000_000 * NS_PER_S) -> None:
        assert start_ns >= 0
        self._now_ns = start_ns
        self._lock = threading.Lock()

    def now_ns(self) -> int:
        with self._lock:
            return self._now_ns

    def advance(self, *, seconds: int = 0, nanoseconds: int = 0) -> int:
        delta_ns = seconds * NS_PER_S + nanoseconds
        if delta_ns < 0:
            raise ValueError("a clock never moves backwards")
        with self._lock:
            self._now_ns += delta_ns
            return self._now_ns
