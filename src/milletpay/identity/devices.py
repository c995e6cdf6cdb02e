"""Devices: the phones a user binds, each with a WebAuthn credential made in its hardware.

Binding is a WebAuthn registration ceremony: `begin_binding` issues a single-use
challenge, the phone answers with an attestation holding the public half of a key pair
it generated in its secure hardware, and `finish_binding` verifies it (user verification
required) and stores the device and the public key. The private key never reaches the
platform. Unbinding a phone revokes every credential bound to it.

This module owns the `devices`, `webauthn_credentials` and `webauthn_challenges` tables
(migration 0004) and the challenge rules shared with quick pay (`quickpay.py`): expiry by
the injected clock, single use. It moves no money.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from webauthn import generate_registration_options, options_to_json, verify_registration_response
from webauthn.helpers import base64url_to_bytes, parse_client_data_json
from webauthn.helpers.cose import COSEAlgorithmIdentifier
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorAttachment,
    AuthenticatorSelectionCriteria,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from milletpay.core.clock import NS_PER_S, Clock
from milletpay.core.ids import IdGenerator, id_from_bytes, id_to_bytes
from milletpay.identity.errors import IdentityError, UserNotFound
from milletpay.identity.tables import user_key, users
from milletpay.store.engine import read_transaction as read
from milletpay.store.engine import write_transaction as write

#: Active (bound) devices one user may have at once.
DEVICES_PER_USER_MAX = 5
#: How long a challenge (binding or payment) may be answered, by the injected clock.
CHALLENGE_TTL_S = 120
#: Random bytes in every challenge (a payment challenge adds the payment's hash).
CHALLENGE_NONCE_BYTES = 16
#: Unanswered, unexpired challenges one user may hold at once (bounds the table per user).
CHALLENGES_LIVE_PER_USER_MAX = 16
#: Expired challenges deleted by one `purge_challenges` call.
CHALLENGE_PURGE_ROWS_MAX = 1_000
#: Length of a device id or a model name.
DEVICE_ID_CHARS_MAX = 64
MODEL_CHARS_MAX = 64
#: Credential ids are at most 1023 bytes (WebAuthn Level 2, 5.1 credential id).
CREDENTIAL_ID_BYTES_MAX = 1023
#: The only signature algorithm accepted: ECDSA P-256 with SHA-256 (COSE -7).
ALGORITHMS = (COSEAlgorithmIdentifier.ECDSA_SHA_256,)

devices = sa.table(
    "devices",
    sa.column("id", sa.LargeBinary()),
    sa.column("user_id", sa.LargeBinary()),
    sa.column("device_id", sa.String()),
    sa.column("model", sa.String()),
    sa.column("status", sa.String()),
    sa.column("bound_at", sa.BigInteger()),
    sa.column("unbound_at", sa.BigInteger()),
)
credentials = sa.table(
    "webauthn_credentials",
    sa.column("credential_id", sa.LargeBinary()),
    sa.column("device_key", sa.LargeBinary()),
    sa.column("user_id", sa.LargeBinary()),
    sa.column("public_key", sa.LargeBinary()),
    sa.column("sign_count", sa.BigInteger()),
    sa.column("status", sa.String()),
    sa.column("created_at", sa.BigInteger()),
    sa.column("last_used_at", sa.BigInteger()),
    sa.column("revoked_at", sa.BigInteger()),
)
challenges = sa.table(
    "webauthn_challenges",
    sa.column("challenge", sa.LargeBinary()),
    sa.column("user_id", sa.LargeBinary()),
    sa.column("purpose", sa.String()),
    sa.column("device_id", sa.String()),
    sa.column("model", sa.String()),
    sa.column("credential_id", sa.LargeBinary()),
    sa.column("payment_hash", sa.LargeBinary()),
    sa.column("partner_id", sa.String()),
    sa.column("created_at", sa.BigInteger()),
    sa.column("expires_at", sa.BigInteger()),
    sa.column("used_at", sa.BigInteger()),
)


class DeviceStatus(StrEnum):
    ACTIVE = "active"
    UNBOUND = "unbound"


class CredentialStatus(StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"


class ChallengePurpose(StrEnum):
    BIND = "bind"
    PAYMENT = "payment"


# -- errors -----------------------------------------------------------------------------


class DeviceInvalid(IdentityError):
    code = "device_invalid"


class DeviceLimitReached(IdentityError):
    code = "device_limit_reached"


class DeviceAlreadyBound(IdentityError):
    code = "device_already_bound"


class DeviceBoundToAnotherUser(DeviceAlreadyBound):
    """The phone is bound to another user: only they can unbind it."""

    code = "device_bound_to_another_user"


class DeviceNotFound(IdentityError):
    code = "device_not_found"


class ChallengeUnknown(IdentityError):
    code = "challenge_unknown"


class ChallengeExpired(IdentityError):
    code = "challenge_expired"


class ChallengeUsed(IdentityError):
    """The challenge was answered before: a replayed or reused response."""

    code = "challenge_used"


class ChallengeLimitReached(IdentityError):
    code = "challenge_limit_reached"


class ResponseMalformed(IdentityError):
    """The phone's WebAuthn response cannot be read (JSON, base64url, clientDataJSON)."""

    code = "webauthn_response_malformed"


class AttestationInvalid(IdentityError):
    code = "attestation_invalid"


# -- values -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RelyingParty:
    """Who credentials are made for: the WebAuthn RP id, its name and its own origins."""

    rp_id: str
    name: str
    origins: tuple[str, ...]


MILLET_RP = RelyingParty("pay.millet.example", "Millet Pay", ("https://pay.millet.example",))


@dataclass(frozen=True, slots=True)
class Device:
    user_id: int
    device_id: str
    model: str
    status: DeviceStatus
    credential_id: bytes
    bound_at_ns: int
    unbound_at_ns: int | None


@dataclass(frozen=True, slots=True)
class Challenge:
    """A stored challenge, claimed (marked used) by the caller that reads it."""

    challenge: bytes
    user_id: int
    purpose: ChallengePurpose
    device_id: str | None
    model: str | None
    credential_id: bytes | None
    payment_hash: bytes | None
    partner_id: str | None


# -- the service --------------------------------------------------------------------------


class DeviceRegistry:
    """Binding and unbinding phones, and their credentials; thread-safe."""

    def __init__(self, engine: sa.Engine, clock: Clock, *, rp: RelyingParty = MILLET_RP) -> None:
        self._engine = engine
        self._clock = clock
        self._rp = rp
        self._ids = IdGenerator(clock)

    @property
    def rp(self) -> RelyingParty:
        return self._rp

    def begin_binding(self, user_id: int, device_id: str, model: str) -> str:
        """WebAuthn creation options (JSON) for the phone `device_id` to make a credential.

        `DeviceInvalid`, `UserNotFound`, `DeviceLimitReached` (at `DEVICES_PER_USER_MAX`
        active devices) or `DeviceAlreadyBound` are raised before anything is stored.
        """
        device_id = _text("device id", device_id, DEVICE_ID_CHARS_MAX)
        model = _text("model", model, MODEL_CHARS_MAX)
        key = user_key(user_id)
        challenge = os.urandom(CHALLENGE_NONCE_BYTES)
        with write(self._engine) as conn:
            phone = require_user(conn, key)
            _check_can_bind(conn, key, device_id)
            insert_challenge(
                conn,
                self._clock,
                challenge,
                key,
                ChallengePurpose.BIND,
                device_id=device_id,
                model=model,
            )
        options = generate_registration_options(
            rp_id=self._rp.rp_id,
            rp_name=self._rp.name,
            user_name=phone,
            user_id=key,
            challenge=challenge,
            timeout=CHALLENGE_TTL_S * 1000,
            authenticator_selection=AuthenticatorSelectionCriteria(
                authenticator_attachment=AuthenticatorAttachment.PLATFORM,
                resident_key=ResidentKeyRequirement.DISCOURAGED,
                user_verification=UserVerificationRequirement.REQUIRED,
            ),
            supported_pub_key_algs=list(ALGORITHMS),
        )
        return options_to_json(options)

    def finish_binding(self, user_id: int, credential_json: str) -> Device:
        """Verify the phone's attestation and bind the device with its credential.

        The challenge is spent whatever the outcome. `ResponseMalformed`, `ChallengeUnknown`,
        `ChallengeUsed`, `ChallengeExpired`, `AttestationInvalid`, then the limits of
        `begin_binding` again (another binding may have finished in between).
        """
        key = user_key(user_id)
        challenge = claim_challenge(
            self._engine, self._clock, client_challenge(credential_json), key, ChallengePurpose.BIND
        )
        try:
            verified = verify_registration_response(
                credential=credential_json,
                expected_challenge=challenge.challenge,
                expected_rp_id=self._rp.rp_id,
                expected_origin=list(self._rp.origins),
                require_user_verification=True,
                supported_pub_key_algs=list(ALGORITHMS),
            )
        except WebAuthnException as exc:
            raise AttestationInvalid(f"the phone's attestation was refused: {exc}") from None
        assert challenge.device_id is not None and challenge.model is not None
        now_ns = self._clock.now_ns()
        device = Device(
            user_id,
            challenge.device_id,
            challenge.model,
            DeviceStatus.ACTIVE,
            verified.credential_id,
            now_ns,
            None,
        )
        try:
            self._store_binding(key, device, verified.credential_public_key, verified.sign_count)
        except sa.exc.IntegrityError:  # a concurrent binding of the same phone won the index
            raise DeviceAlreadyBound(f"device {device.device_id!r} is bound already") from None
        return device

    def _store_binding(self, key: bytes, device: Device, public_key: bytes, count: int) -> None:
        with write(self._engine) as conn:
            require_user(conn, key)
            _check_can_bind(conn, key, device.device_id)
            device_key = id_to_bytes(self._ids.next_id())
            conn.execute(sa.insert(devices).values(_device_row(device_key, key, device)))
            conn.execute(
                sa.insert(credentials).values(
                    credential_id=device.credential_id,
                    device_key=device_key,
                    user_id=key,
                    public_key=public_key,
                    sign_count=count,
                    status=CredentialStatus.ACTIVE,
                    created_at=device.bound_at_ns,
                    last_used_at=None,
                    revoked_at=None,
                )
            )

    def unbind(self, user_id: int, device_id: str) -> Device:
        """Mark the active device unbound and revoke its credentials; `DeviceNotFound`."""
        key = user_key(user_id)
        now_ns = self._clock.now_ns()
        with write(self._engine) as conn:
            require_user(conn, key)
            row = conn.execute(
                _device_query(key).where(
                    devices.c.device_id == device_id, devices.c.status == DeviceStatus.ACTIVE
                )
            ).one_or_none()
            if row is None:
                raise DeviceNotFound(f"no active device {device_id!r} for this user")
            conn.execute(
                sa.update(devices)
                .where(devices.c.id == row.id)
                .values(status=DeviceStatus.UNBOUND, unbound_at=now_ns)
            )
            conn.execute(
                sa.update(credentials)
                .where(
                    credentials.c.device_key == row.id,
                    credentials.c.status == CredentialStatus.ACTIVE,
                )
                .values(status=CredentialStatus.REVOKED, revoked_at=now_ns)
            )
        bound = _device(user_id, row)
        return dataclasses.replace(bound, status=DeviceStatus.UNBOUND, unbound_at_ns=now_ns)

    def list_devices(self, user_id: int, *, include_unbound: bool = False) -> list[Device]:
        """The user's devices, oldest binding first."""
        key = user_key(user_id)
        query = _device_query(key).order_by(devices.c.bound_at, devices.c.id)
        if not include_unbound:
            query = query.where(devices.c.status == DeviceStatus.ACTIVE)
        with read(self._engine) as conn:
            require_user(conn, key)
            return [_device(user_id, row) for row in conn.execute(query)]

    def credential_of(self, user_id: int, device_id: str) -> bytes:
        """The credential id of the user's active device; `DeviceNotFound`."""
        for device in self.list_devices(user_id):
            if device.device_id == device_id:
                return device.credential_id
        raise DeviceNotFound(f"no active device {device_id!r} for this user")

    def purge_challenges(self) -> int:
        """Delete up to `CHALLENGE_PURGE_ROWS_MAX` expired challenges; how many went."""
        return purge_expired_challenges(self._engine, self._clock)


# -- challenges (shared with quick pay) ---------------------------------------------------


def insert_challenge(
    conn: sa.Connection,
    clock: Clock,
    challenge: bytes,
    user: bytes,
    purpose: ChallengePurpose,
    **fields: Any,
) -> None:
    """Store a new challenge; `ChallengeLimitReached` if the user holds too many live ones."""
    now_ns = clock.now_ns()
    live = conn.execute(
        sa.select(sa.func.count())
        .select_from(challenges)
        .where(
            challenges.c.user_id == user,
            challenges.c.used_at.is_(None),
            challenges.c.expires_at > now_ns,
        )
    ).scalar_one()
    if live >= CHALLENGES_LIVE_PER_USER_MAX:
        raise ChallengeLimitReached(
            f"at most {CHALLENGES_LIVE_PER_USER_MAX} open challenges per user; "
            f"answer one or wait {CHALLENGE_TTL_S} s"
        )
    row: dict[str, Any] = {
        "challenge": challenge,
        "user_id": user,
        "purpose": purpose,
        "device_id": None,
        "model": None,
        "credential_id": None,
        "payment_hash": None,
        "partner_id": None,
        "created_at": now_ns,
        "expires_at": now_ns + CHALLENGE_TTL_S * NS_PER_S,
        "used_at": None,
    }
    assert set(fields) <= set(row), fields
    row.update(fields)
    conn.execute(sa.insert(challenges).values(row))


def claim_challenge(
    engine: sa.Engine, clock: Clock, challenge: bytes, user: bytes, purpose: ChallengePurpose
) -> Challenge:
    """Mark the challenge used, in a transaction of its own so that it stays spent even if
    the response then fails; `ChallengeUnknown`, `ChallengeUsed` or `ChallengeExpired`."""
    now_ns = clock.now_ns()
    with write(engine) as conn:
        row = conn.execute(
            sa.select(challenges).where(challenges.c.challenge == challenge).with_for_update()
        ).one_or_none()
        if row is None or row.user_id != user or row.purpose != purpose:
            raise ChallengeUnknown(f"no {purpose} challenge like this was issued to this user")
        if row.used_at is not None:
            raise ChallengeUsed("this challenge was answered already; ask for a new one")
        conn.execute(
            sa.update(challenges).where(challenges.c.challenge == challenge).values(used_at=now_ns)
        )
    if now_ns >= row.expires_at:
        raise ChallengeExpired(f"the challenge expired ({CHALLENGE_TTL_S} s); ask for a new one")
    return Challenge(
        row.challenge,
        id_from_bytes(row.user_id),
        ChallengePurpose(row.purpose),
        row.device_id,
        row.model,
        row.credential_id,
        row.payment_hash,
        row.partner_id,
    )


def client_challenge(credential_json: str) -> bytes:
    """The challenge a WebAuthn response says it answers (from its clientDataJSON)."""
    try:
        response = json.loads(credential_json)["response"]
        client_data = parse_client_data_json(base64url_to_bytes(response["clientDataJSON"]))
    except (ValueError, KeyError, TypeError, WebAuthnException) as exc:
        raise ResponseMalformed(f"no readable response.clientDataJSON: {exc}") from None
    challenge: bytes = client_data.challenge
    return challenge


def purge_expired_challenges(engine: sa.Engine, clock: Clock) -> int:
    """Delete up to `CHALLENGE_PURGE_ROWS_MAX` expired challenges; how many were deleted."""
    with write(engine) as conn:
        expired = (
            conn.execute(
                sa.select(challenges.c.challenge)
                .where(challenges.c.expires_at <= clock.now_ns())
                .order_by(challenges.c.expires_at)
                .limit(CHALLENGE_PURGE_ROWS_MAX)
            )
            .scalars()
            .all()
        )
        if expired:
            conn.execute(sa.delete(challenges).where(challenges.c.challenge.in_(expired)))
    return len(expired)


# -- plumbing -----------------------------------------------------------------------------


def require_user(conn: sa.Connection, key: bytes) -> str:
    """Lock the user's row (serializing device changes per user); the user's phone."""
    phone = conn.execute(
        sa.select(users.c.phone).where(users.c.id == key).with_for_update()
    ).scalar_one_or_none()
    if phone is None:
        raise UserNotFound(f"no user {int.from_bytes(key, 'big'):032x}")
    return str(phone)


def _check_can_bind(conn: sa.Connection, key: bytes, device_id: str) -> None:
    bound = conn.execute(
        sa.select(devices.c.user_id).where(
            devices.c.device_id == device_id, devices.c.status == DeviceStatus.ACTIVE
        )
    ).first()
    if bound is not None and bytes(bound.user_id) != key:
        raise DeviceBoundToAnotherUser(f"device {device_id!r} is bound to another user")
    if bound is not None:
        raise DeviceAlreadyBound(f"device {device_id!r} is bound already; unbind it first")
    active = conn.execute(
        sa.select(sa.func.count())
        .select_from(devices)
        .where(devices.c.user_id == key, devices.c.status == DeviceStatus.ACTIVE)
    ).scalar_one()
    if active >= DEVICES_PER_USER_MAX:
        raise DeviceLimitReached(
            f"at most {DEVICES_PER_USER_MAX} devices may be bound at once; unbind one first"
        )


def _device_query(key: bytes) -> sa.Select[Any]:
    return (
        sa.select(devices, credentials.c.credential_id)
        .join(credentials, credentials.c.device_key == devices.c.id)
        .where(devices.c.user_id == key)
    )


def _device_row(device_key: bytes, user: bytes, device: Device) -> dict[str, Any]:
    return {
        "id": device_key,
        "user_id": user,
        "device_id": device.device_id,
        "model": device.model,
        "status": device.status,
        "bound_at": device.bound_at_ns,
        "unbound_at": device.unbound_at_ns,
    }


def _device(user_id: int, row: Any) -> Device:
    return Device(
        user_id,
        row.device_id,
        row.model,
        DeviceStatus(row.status),
        row.credential_id,
        row.bound_at,
        row.unbound_at,
    )


def _text(name: str, value: str, chars_max: int) -> str:
    value = value.strip()
    if not value:
        raise DeviceInvalid(f"{name} is empty")
    if len(value) > chars_max:
        raise DeviceInvalid(f"{name} is longer than {chars_max} characters")
    if not value.isprintable():
        raise DeviceInvalid(f"{name} holds control characters")
    return value
