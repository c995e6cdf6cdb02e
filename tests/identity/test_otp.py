"""One-time codes: SMS delivery, 5-minute expiry, attempts, single use, hashed storage."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from milletpay.core.clock import ManualClock
from milletpay.identity import (
    IdentityService,
    OtpPurposeUnknown,
    OtpRateLimited,
    OtpStatus,
    SimulatedSms,
    User,
    UserNotFound,
)
from milletpay.identity.otp import OTP_ATTEMPTS_MAX, OTP_ISSUES_PER_WINDOW_MAX, OTP_TTL_S
from milletpay.identity.tables import otps

from .conftest import GB_11643_EXAMPLE

STEP_UP = "step_up"


@pytest.fixture
def user(service: IdentityService) -> User:
    return service.register("13812345678", "张三", GB_11643_EXAMPLE)


def _sent_code(sms: SimulatedSms, user: User) -> str:
    match = re.search(r"\b(\d{6})\b", sms.messages_to(user.phone)[-1].text)
    assert match is not None
    return match.group(1)


def _other(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def test_code_is_texted_to_the_users_phone(
    service: IdentityService, sms: SimulatedSms, user: User
) -> None:
    service.send_otp(user.id, STEP_UP)
    [message] = sms.outbox
    assert message.phone == "+8613812345678" and "Millet Pay" in message.text
    assert service.verify_otp(user.id, STEP_UP, _sent_code(sms, user)) is OtpStatus.OK


def test_code_is_stored_only_as_a_keyed_hash(
    service: IdentityService, sms: SimulatedSms, user: User
) -> None:
    service.send_otp(user.id, STEP_UP)
    with service._engine.connect() as conn:
        stored = conn.execute(sa.select(otps.c.code_hash)).scalar_one()
    assert len(stored) == 32 and _sent_code(sms, user).encode() not in stored


def test_reused_code_is_refused(service: IdentityService, sms: SimulatedSms, user: User) -> None:
    service.send_otp(user.id, STEP_UP)
    code = _sent_code(sms, user)
    assert service.verify_otp(user.id, STEP_UP, code) is OtpStatus.OK
    assert service.verify_otp(user.id, STEP_UP, code) is OtpStatus.USED


def test_code_expires_after_five_minutes(
    service: IdentityService, sms: SimulatedSms, clock: ManualClock, user: User
) -> None:
    service.send_otp(user.id, STEP_UP)
    clock.advance(seconds=OTP_TTL_S)
    assert service.verify_otp(user.id, STEP_UP, _sent_code(sms, user)) is OtpStatus.EXPIRED


def test_code_is_good_until_the_last_nanosecond(
    service: IdentityService, sms: SimulatedSms, clock: ManualClock, user: User
) -> None:
    service.send_otp(user.id, STEP_UP)
    clock.advance(seconds=OTP_TTL_S - 1, nanoseconds=999_999_999)
    assert service.verify_otp(user.id, STEP_UP, _sent_code(sms, user)) is OtpStatus.OK


def test_wrong_code_then_right_code_is_ok(
    service: IdentityService, sms: SimulatedSms, user: User
) -> None:
    service.send_otp(user.id, STEP_UP)
    code = _sent_code(sms, user)
    assert service.verify_otp(user.id, STEP_UP, _other(code)) is OtpStatus.WRONG
    assert service.verify_otp(user.id, STEP_UP, code) is OtpStatus.OK


def test_code_dies_after_the_maximum_wrong_attempts(
    service: IdentityService, sms: SimulatedSms, user: User
) -> None:
    service.send_otp(user.id, STEP_UP)
    code = _sent_code(sms, user)
    answers = [service.verify_otp(user.id, STEP_UP, _other(code)) for _ in range(OTP_ATTEMPTS_MAX)]
    assert answers == [OtpStatus.WRONG] * OTP_ATTEMPTS_MAX
    assert service.verify_otp(user.id, STEP_UP, code) is OtpStatus.ATTEMPTS_EXCEEDED


def test_a_new_code_replaces_the_previous_one(
    service: IdentityService, sms: SimulatedSms, clock: ManualClock, user: User
) -> None:
    service.send_otp(user.id, STEP_UP)
    first = _sent_code(sms, user)
    clock.advance(seconds=1)
    service.send_otp(user.id, STEP_UP)
    second = _sent_code(sms, user)
    if first != second:
        assert service.verify_otp(user.id, STEP_UP, first) is OtpStatus.WRONG
    assert service.verify_otp(user.id, STEP_UP, second) is OtpStatus.OK


def test_no_code_sent_is_not_found(service: IdentityService, user: User) -> None:
    assert service.verify_otp(user.id, STEP_UP, "123456") is OtpStatus.NOT_FOUND


def test_codes_are_kept_apart_by_purpose(
    service: IdentityService, sms: SimulatedSms, user: User
) -> None:
    service.send_otp(user.id, "pin_reset")
    assert service.verify_otp(user.id, STEP_UP, _sent_code(sms, user)) is OtpStatus.NOT_FOUND


def test_sending_is_limited_per_hour(
    service: IdentityService, sms: SimulatedSms, clock: ManualClock, user: User
) -> None:
    for _ in range(OTP_ISSUES_PER_WINDOW_MAX):
        service.send_otp(user.id, STEP_UP)
    with pytest.raises(OtpRateLimited):
        service.send_otp(user.id, STEP_UP)
    assert len(sms.outbox) == OTP_ISSUES_PER_WINDOW_MAX
    clock.advance(seconds=3600)
    service.send_otp(user.id, STEP_UP)


def test_unknown_purpose_and_unknown_user_are_refused(service: IdentityService) -> None:
    with pytest.raises(OtpPurposeUnknown, match="step_up"):
        service.send_otp(1, "login_maybe")
    with pytest.raises(UserNotFound):
        service.send_otp(1, STEP_UP)


@pytest.mark.parametrize(
    "garbage", ["", "１２３４５６", "12\u00e93", "\ud800", " 123456", "x" * 64]
)
def test_a_code_that_is_not_digits_is_a_wrong_try_not_a_crash(
    service: IdentityService, sms: SimulatedSms, user: User, garbage: str
) -> None:
    """Found by schemathesis through POST /v1/sessions: non-ASCII text crashed the hash."""
    service.send_otp(user.id, STEP_UP)
    code = _sent_code(sms, user)
    assert service.verify_otp(user.id, STEP_UP, garbage) is OtpStatus.WRONG
    assert service.verify_otp(user.id, STEP_UP, code) is OtpStatus.OK
