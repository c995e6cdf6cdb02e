"""The 6-digit payment PIN: format rules, argon2id hashing, lock-out after wrong tries.

Only the argon2 hash is stored. `PIN_TRIES_MAX` wrong tries in a row lock the PIN
(`pin_locked`) until it is reset with a one-time code; a right PIN clears the count.
The slow hash is checked outside any write transaction; the counters then move in one
short, atomic UPDATE, so concurrent tries can neither skip nor undo a lock.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from enum import StrEnum

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from milletpay.identity.errors import PinFormatInvalid, PinTooSimple
from milletpay.identity.tables import pins
from milletpay.store.sql import Sql

PIN_DIGITS = 6
PIN_TRIES_MAX = 5


class PinStatus(StrEnum):
    OK = "ok"
    WRONG = "pin_wrong"
    LOCKED = "pin_locked"
    NOT_SET = "pin_not_set"


@dataclass(frozen=True, slots=True)
class PinCheck:
    status: PinStatus
    tries_left: int


@dataclass(frozen=True, slots=True)
class PinHashing:
    """argon2id cost; the default is RFC 9106's second recommended option (64 MiB, t=3)."""

    time_cost: int = 3
    memory_cost_kib: int = 65_536
    parallelism: int = 4

    def hasher(self) -> PasswordHasher:
        return PasswordHasher(
            time_cost=self.time_cost,
            memory_cost=self.memory_cost_kib,
            parallelism=self.parallelism,
        )


#: Cheap parameters for tests and the simulator only; never for real PINs.
PIN_HASHING_FAST = PinHashing(time_cost=1, memory_cost_kib=8, parallelism=1)


@dataclass(frozen=True, slots=True)
class PinTry:
    """The answer of `IdentityService.try_pin`: a failure already counted (`pin_hash` is
    None), or a right try to confirm, with a stronger hash of it if the cost was raised."""

    check: PinCheck
    pin_hash: str | None = None
    rehash: str | None = None


def validate_pin(pin: str) -> str:
    """The PIN if it is 6 ASCII digits and not trivially guessable; else a clear error."""
    if len(pin) != PIN_DIGITS or not (pin.isascii() and pin.isdigit()):
        raise PinFormatInvalid(f"a payment PIN is exactly {PIN_DIGITS} digits")
    steps = {int(b) - int(a) for a, b in itertools.pairwise(pin)}
    if steps in ({0}, {1}, {-1}):
        raise PinTooSimple("a payment PIN may not be one repeated digit or a straight run")
    return pin


def hash_matches(hasher: PasswordHasher, pin_hash: str, pin: str) -> bool:
    try:
        return hasher.verify(pin_hash, pin)
    except (VerificationError, InvalidHashError):
        return False


def store_pin(conn: sa.Connection, user_id: bytes, pin_hash: str, now_ns: int) -> None:
    """Insert or replace the user's PIN and clear any lock (first set-up or OTP reset)."""
    updated = conn.execute(
        sa.update(pins)
        .where(pins.c.user_id == user_id)
        .values(pin_hash=pin_hash, failed_attempts=0, locked_at=None, updated_at=now_ns)
    )
    if updated.rowcount == 0:
        conn.execute(
            sa.insert(pins).values(
                user_id=user_id,
                pin_hash=pin_hash,
                failed_attempts=0,
                locked_at=None,
                updated_at=now_ns,
            )
        )


_CLEAR_TRIES = Sql(
    "UPDATE pins SET failed_attempts = 0 "
    "WHERE user_id = :user AND pin_hash = :hash AND locked_at IS NULL"
)


def record_right_try(conn: sa.Connection, user_id: bytes, pin_hash: str) -> bool:
    """Clear the count unless the PIN was locked or changed meanwhile; True if cleared."""
    return _CLEAR_TRIES.run(conn, user=user_id, hash=pin_hash).rowcount == 1


def replace_hash(conn: sa.Connection, user_id: bytes, old_hash: str, new_hash: str) -> None:
    """Swap in a hash of the same PIN made with the current cost, unless it changed meanwhile."""
    conn.execute(
        sa.update(pins)
        .where(pins.c.user_id == user_id, pins.c.pin_hash == old_hash)
        .values(pin_hash=new_hash)
    )


def record_wrong_try(conn: sa.Connection, user_id: bytes, pin_hash: str, now_ns: int) -> PinCheck:
    """Count one wrong try (unless the PIN changed meanwhile); lock at `PIN_TRIES_MAX`."""
    failed = pins.c.failed_attempts + 1
    conn.execute(
        sa.update(pins)
        .where(pins.c.user_id == user_id, pins.c.pin_hash == pin_hash, pins.c.locked_at.is_(None))
        .values(
            failed_attempts=failed,
            locked_at=sa.case((failed >= PIN_TRIES_MAX, now_ns), else_=None),
        )
    )
    row = conn.execute(
        sa.select(pins.c.failed_attempts, pins.c.locked_at).where(pins.c.user_id == user_id)
    ).one()
    if row.locked_at is not None:
        return PinCheck(PinStatus.LOCKED, 0)
    return PinCheck(PinStatus.WRONG, PIN_TRIES_MAX - row.failed_attempts)
