"""User sessions: short-lived bearer tokens for the wallet app.

A token is `<payload>.<mac>` in base64url: the payload holds the user id and the
instant it expires; the MAC is HMAC-SHA256 under a key derived from the platform's
key ring, so any API server that shares the key ring can check it without a database
read. Tokens live `SESSION_TTL_S`; a phone signs in again with a one-time code. Moving
money will additionally need a quick-pay assertion or the PIN.
"""

from __future__ import annotations

import base64
import hmac
from dataclasses import dataclass

from milletpay.api.errors import ApiError
from milletpay.core.clock import NS_PER_S, Clock
from milletpay.core.keyring import KeyRing

SESSION_TTL_S = 15 * 60
TOKEN_LENGTH_MAX = 200
_KEY_PURPOSE = b"millet api session token v1"
_PAYLOAD_BYTES = 16 + 8


@dataclass(frozen=True, slots=True)
class Session:
    user_id: int
    expires_at_ns: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionTokens:
    def __init__(self, keyring: KeyRing, clock: Clock) -> None:
        self._key = keyring.derive(_KEY_PURPOSE)
        self._clock = clock

    def _mac(self, payload: bytes) -> bytes:
        return hmac.digest(self._key, payload, "sha256")

    def issue(self, user_id: int) -> tuple[str, Session]:
        expires_at_ns = self._clock.now_ns() + SESSION_TTL_S * NS_PER_S
        payload = user_id.to_bytes(16, "big") + expires_at_ns.to_bytes(8, "big")
        return f"{_b64(payload)}.{_b64(self._mac(payload))}", Session(user_id, expires_at_ns)

    def check(self, authorization: str | None) -> Session:
        """The session an `Authorization: Bearer <token>` header carries, or 401."""
        if not authorization or not authorization.startswith("Bearer "):
            raise ApiError(401, "unauthenticated", "send Authorization: Bearer <token>")
        token = authorization[len("Bearer ") :]
        try:
            if len(token) > TOKEN_LENGTH_MAX:
                raise ValueError
            payload_text, mac_text = token.split(".")
            payload, mac = _unb64(payload_text), _unb64(mac_text)
        except ValueError:
            raise ApiError(401, "session_invalid", "the session token is malformed") from None
        if len(payload) != _PAYLOAD_BYTES or not hmac.compare_digest(mac, self._mac(payload)):
            raise ApiError(401, "session_invalid", "the session token is not valid")
        session = Session(int.from_bytes(payload[:16], "big"), int.from_bytes(payload[16:], "big"))
        if self._clock.now_ns() >= session.expires_at_ns:
            raise ApiError(401, "session_expired", "the session has expired: sign in again")
        return session
