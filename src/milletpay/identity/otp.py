"""One-time 6-digit codes for step-up and PIN reset, sent by SMS.

A code is stored only as an HMAC keyed from the key ring (a plain hash of a 6-digit code
is reversed by trying a million values). A code is good for `OTP_TTL_S` seconds by the
injected clock, for `OTP_ATTEMPTS_MAX` tries, and once; only the newest code of a user
and purpose counts, so asking again replaces the previous code.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from milletpay.core.clock import NS_PER_S
from milletpay.core.keyring import KeyRing

OTP_DIGITS = 6
OTP_TTL_S = 300
OTP_ATTEMPTS_MAX = 5
#: Codes one user may be sent per purpose in `OTP_RATE_WINDOW_S` (SMS costs money and annoys).
OTP_ISSUES_PER_WINDOW_MAX = 5
OTP_RATE_WINDOW_S = 3600
OTP_KEY_PURPOSE = b"milletpay/identity/otp/v1"
SMS_OUTBOX_MAX = 10_000


class OtpPurpose(StrEnum):
    LOGIN = "login"
    STEP_UP = "step_up"
    PIN_RESET = "pin_reset"


class OtpStatus(StrEnum):
    OK = "ok"
    WRONG = "otp_wrong"
    EXPIRED = "otp_expired"
    USED = "otp_used"
    ATTEMPTS_EXCEEDED = "otp_attempts_exceeded"
    NOT_FOUND = "otp_not_found"


class SmsChannel(Protocol):
    """Delivers a text message to a `+86` mobile number."""

    def send(self, phone: str, text: str) -> None: ...


@dataclass(frozen=True, slots=True)
class SmsMessage:
    phone: str
    text: str


class SimulatedSms:
    """An SMS channel that keeps what it sends in `outbox` (the newest `SMS_OUTBOX_MAX`)."""

    def __init__(self) -> None:
        self.outbox: list[SmsMessage] = []
        self._lock = threading.Lock()

    def send(self, phone: str, text: str) -> None:
        with self._lock:
            self.outbox.append(SmsMessage(phone, text))
            del self.outbox[:-SMS_OUTBOX_MAX]

    def messages_to(self, phone: str) -> list[SmsMessage]:
        with self._lock:
            return [message for message in self.outbox if message.phone == phone]


def new_code() -> str:
    return f"{secrets.randbelow(10**OTP_DIGITS):0{OTP_DIGITS}d}"


def message_text(code: str) -> str:
    return (
        f"Millet Pay: your verification code is {code}. It expires in {OTP_TTL_S // 60} "
        "minutes. Never share it with anyone."
    )


def code_hash(keyring: KeyRing, otp_id: bytes, code: str) -> bytes:
    """HMAC-SHA256 over the code's id and the code, so equal codes hash differently."""
    key = keyring.derive(OTP_KEY_PURPOSE)
    # Any text hashes (UTF-8): a code that is not even digits is simply a wrong try.
    return hmac.new(key, otp_id + code.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()


def expires_at(now_ns: int) -> int:
    return now_ns + OTP_TTL_S * NS_PER_S


def judge(row: Any, code_matches: bool, now_ns: int) -> OtpStatus:
    """The answer for a try against the newest code `row` (None when there is none).

    Checked in this order so that a used or expired code never reveals whether the
    guess was right, and a code past its attempts stays dead even when guessed.
    """
    if row is None:
        return OtpStatus.NOT_FOUND
    if row.used_at is not None:
        return OtpStatus.USED
    if now_ns >= row.expires_at:
        return OtpStatus.EXPIRED
    if row.attempts >= OTP_ATTEMPTS_MAX:
        return OtpStatus.ATTEMPTS_EXCEEDED
    return OtpStatus.OK if code_matches else OtpStatus.WRONG
