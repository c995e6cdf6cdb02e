"""Time-ordered 128-bit identifiers.

Ids are chosen by the client (so that a retry reuses the same id) and ordered by
time (so that the database's id index is appended to, not scattered). The layout
is ULID's: 48 bits of milliseconds, then 80 bits that start random and count up
within the same millisecond.
"""

from __future__ import annotations

import os
import threading

from milletpay.core.clock import Clock, SystemClock

_RANDOM_BITS = 80
_RANDOM_MASK = (1 << _RANDOM_BITS) - 1


class IdGenerator:
    """Produces strictly increasing 128-bit ids; thread-safe."""

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._last_ms = -1
        self._last_random = 0

    def next_id(self) -> int:
        with self._lock:
            ms = self._clock.now_ns() // 1_000_000
            if ms <= self._last_ms:
                ms = self._last_ms
                self._last_random += 1
                if self._last_random > _RANDOM_MASK:  # 2^80 ids in one millisecond
                    ms += 1
                    self._last_random = 0
            else:
                self._last_random = int.from_bytes(os.urandom(10), "big") >> 1
            self._last_ms = ms
            return (ms << _RANDOM_BITS) | self._last_random


def id_to_bytes(value: int) -> bytes:
    """A 128-bit id as 16 big-endian bytes: how every table stores ids (byte order =
    numeric order). Raises OverflowError outside [0, 2^128)."""
    return value.to_bytes(16, "big")


def id_from_bytes(data: bytes) -> int:
    return int.from_bytes(data, "big")
