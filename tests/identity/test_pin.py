"""The payment PIN: format, argon2 hash, lock-out at the 5th wrong try, reset by OTP."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from milletpay.core.clock import ManualClock
from milletpay.core.keyring import KeyRing
from milletpay.identity import (
    IdentityService,
    OtpStatus,
    PinAlreadySet,
    PinCheck,
    PinFormatInvalid,
    PinHashing,
    PinStatus,
    PinTooSimple,
    SimulatedSms,
    User,
)
from milletpay.identity.pin import PIN_TRIES_MAX, validate_pin
from milletpay.identity.tables import pins

from .conftest import GB_11643_EXAMPLE

PIN = "492716"
WRONG = "492717"


@pytest.fixture
def user(service: IdentityService) -> User:
    user = service.register("13812345678", "张三", GB_11643_EXAMPLE)
    service.set_pin(user.id, PIN)
    return user


def _last_code(sms: SimulatedSms, user: User) -> str:
    match = re.search(r"\b(\d{6})\b", sms.messages_to(user.phone)[-1].text)
    assert match is not None
    return match.group(1)


def test_right_pin_is_ok(service: IdentityService, user: User) -> None:
    assert service.check_pin(user.id, PIN) == PinCheck(PinStatus.OK, PIN_TRIES_MAX)


def test_pin_is_stored_as_an_argon2id_hash(service: IdentityService, user: User) -> None:
    with service._engine.connect() as conn:
        stored = conn.execute(sa.select(pins.c.pin_hash)).scalar_one()
    assert stored.startswith("$argon2id$") and PIN not in stored


def test_wrong_pin_tells_the_tries_left(service: IdentityService, user: User) -> None:
    assert service.check_pin(user.id, WRONG) == PinCheck(PinStatus.WRONG, 4)
    assert service.check_pin(user.id, WRONG) == PinCheck(PinStatus.WRONG, 3)


def test_fifth_wrong_pin_locks(service: IdentityService, user: User) -> None:
    answers = [service.check_pin(user.id, WRONG).status for _ in range(PIN_TRIES_MAX)]
    assert answers == [PinStatus.WRONG] * 4 + [PinStatus.LOCKED]


def test_locked_pin_refuses_even_the_right_pin(service: IdentityService, user: User) -> None:
    for _ in range(PIN_TRIES_MAX):
        service.check_pin(user.id, WRONG)
    assert service.check_pin(user.id, PIN) == PinCheck(PinStatus.LOCKED, 0)
    assert PinStatus.LOCKED == "pin_locked"


def test_right_pin_clears_the_count_of_wrong_tries(service: IdentityService, user: User) -> None:
    for _ in range(PIN_TRIES_MAX - 1):
        service.check_pin(user.id, WRONG)
    assert service.check_pin(user.id, PIN).status is PinStatus.OK
    assert service.check_pin(user.id, WRONG) == PinCheck(PinStatus.WRONG, 4)


def test_pin_not_set_is_an_answer(service: IdentityService) -> None:
    user = service.register("13912345678", "李四", GB_11643_EXAMPLE)
    assert service.check_pin(user.id, PIN).status is PinStatus.NOT_SET


def test_reset_by_otp_lifts_the_lock_and_replaces_the_pin(
    service: IdentityService, sms: SimulatedSms, user: User
) -> None:
    for _ in range(PIN_TRIES_MAX):
        service.check_pin(user.id, WRONG)
    service.request_pin_reset(user.id)
    assert service.reset_pin(user.id, _last_code(sms, user), "805213") is OtpStatus.OK
    assert service.check_pin(user.id, "805213").status is PinStatus.OK
    assert service.check_pin(user.id, PIN).status is PinStatus.WRONG


def test_reset_with_a_wrong_code_changes_nothing(
    service: IdentityService, sms: SimulatedSms, user: User
) -> None:
    service.request_pin_reset(user.id)
    wrong = f"{(int(_last_code(sms, user)) + 1) % 1_000_000:06d}"
    assert service.reset_pin(user.id, wrong, "805213") is OtpStatus.WRONG
    assert service.check_pin(user.id, PIN).status is PinStatus.OK


def test_reset_needs_a_pin_reset_code_not_a_step_up_code(
    service: IdentityService, sms: SimulatedSms, user: User
) -> None:
    service.send_otp(user.id, "step_up")
    assert service.reset_pin(user.id, _last_code(sms, user), "805213") is OtpStatus.NOT_FOUND


def test_first_pin_cannot_be_set_twice(service: IdentityService, user: User) -> None:
    with pytest.raises(PinAlreadySet):
        service.set_pin(user.id, "805213")


@pytest.mark.parametrize("bad", ["12345", "1234567", "12a456", "１２３４５６", ""])
def test_pin_must_be_six_ascii_digits(bad: str) -> None:
    with pytest.raises(PinFormatInvalid, match="exactly 6 digits"):
        validate_pin(bad)


@pytest.mark.parametrize("simple", ["000000", "888888", "123456", "654321", "345678"])
def test_trivial_pins_are_refused(simple: str) -> None:
    with pytest.raises(PinTooSimple):
        validate_pin(simple)


def test_a_right_pin_is_rehashed_when_the_cost_was_raised(
    service: IdentityService, keyring: KeyRing, clock: ManualClock, sms: SimulatedSms, user: User
) -> None:
    stronger = PinHashing(time_cost=2, memory_cost_kib=16, parallelism=1)
    upgraded = IdentityService(service._engine, keyring, clock, sms, pin_hashing=stronger)
    assert upgraded.check_pin(user.id, PIN).status is PinStatus.OK
    with service._engine.connect() as conn:
        stored = conn.execute(sa.select(pins.c.pin_hash)).scalar_one()
    assert "m=16,t=2,p=1" in stored
    assert upgraded.check_pin(user.id, PIN).status is PinStatus.OK
