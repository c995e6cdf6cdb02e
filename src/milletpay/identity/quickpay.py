"""Quick pay ("fingerprint pay"): a payment approved by a WebAuthn assertion of a bound phone.

`begin_payment` issues a challenge bound to exactly one payment: 16 random bytes then the
SHA-256 of the payment (id, payee, amount, currency). The phone signs it after a
fingerprint match; `finish_payment` accepts the assertion only for that same payment,
once, within `CHALLENGE_TTL_S`, with user verification (UV) set, from a credential that
is still active, with a signature counter that moved forward.

Registered partners (`PARTNERS`) may ask the same phone key to approve their payments:
the credential stays Millet Pay's (same RP id), only the partner's own origins are then
accepted, as WebAuthn's related origins. This module approves; it moves no money.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from webauthn import (
    generate_authentication_options,
    options_to_json,
    verify_authentication_response,
)
from webauthn.helpers import parse_authentication_credential_json, parse_authenticator_data
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticationCredential,
    PublicKeyCredentialDescriptor,
    UserVerificationRequirement,
)

from milletpay.core.clock import Clock
from milletpay.core.money import Money
from milletpay.identity.devices import (
    CHALLENGE_NONCE_BYTES,
    CHALLENGE_TTL_S,
    MILLET_RP,
    ChallengePurpose,
    CredentialStatus,
    DeviceNotFound,
    DeviceStatus,
    RelyingParty,
    claim_challenge,
    client_challenge,
    credentials,
    devices,
    insert_challenge,
    require_user,
)
from milletpay.identity.errors import IdentityError
from milletpay.identity.tables import user_key
from milletpay.store.engine import read_transaction as read
from milletpay.store.engine import write_transaction as write

#: Length of a payment id or a payee.
PAYMENT_TEXT_CHARS_MAX = 128
_PAYMENT_HASH_DOMAIN = "millet-quickpay-v1"


class PaymentInvalid(IdentityError):
    code = "payment_invalid"


class PartnerUnknown(IdentityError):
    code = "partner_unknown"


class PaymentMismatch(IdentityError):
    """The assertion approves another payment than the one presented."""

    code = "payment_mismatch"


class CredentialRevoked(IdentityError):
    """The credential's device was unbound: it can no longer approve anything."""

    code = "credential_revoked"


class UserVerificationMissing(IdentityError):
    code = "user_verification_missing"


class SignCountNotIncreased(IdentityError):
    """The authenticator's counter did not move forward: a replay or a cloned key."""

    code = "sign_count_not_increased"


class AssertionInvalid(IdentityError):
    code = "assertion_invalid"


@dataclass(frozen=True, slots=True)
class Payment:
    """What a quick-pay approval is for; its hash is carried in the challenge."""

    payment_id: str
    payee: str
    amount: Money

    def __post_init__(self) -> None:
        for name in ("payment_id", "payee"):
            value = getattr(self, name)
            if not value or len(value) > PAYMENT_TEXT_CHARS_MAX or not value.isprintable():
                raise PaymentInvalid(
                    f"{name} must be 1 to {PAYMENT_TEXT_CHARS_MAX} printable characters"
                )
        if self.amount.amount_minor <= 0:
            raise PaymentInvalid("amount must be positive")


@dataclass(frozen=True, slots=True)
class Partner:
    """A payment provider allowed to ask for assertions of Millet Pay's credentials."""

    partner_id: str
    name: str
    origins: tuple[str, ...]


#: The registered partners, by id. A partner not listed here gets no assertion request.
PARTNERS: Mapping[str, Partner] = {
    partner.partner_id: partner
    for partner in (
        Partner("alipay.example", "Alipay", ("https://alipay.example",)),
        Partner("wechatpay.example", "WeChat Pay", ("https://pay.wechatpay.example",)),
    )
}


@dataclass(frozen=True, slots=True)
class Approval:
    """A payment approved by the user's fingerprint on a bound phone."""

    payment: Payment
    device_id: str
    credential_id: bytes
    sign_count: int
    partner_id: str | None
    approved_at_ns: int


def payment_hash(payment: Payment) -> bytes:
    """SHA-256 of the payment's canonical form (what the challenge commits to)."""
    canonical = json.dumps(
        [
            _PAYMENT_HASH_DOMAIN,
            payment.payment_id,
            payment.payee,
            payment.amount.amount_minor,
            payment.amount.currency,
        ],
        separators=(",", ":"),
        ensure_ascii=True,
    )
    return hashlib.sha256(canonical.encode()).digest()


class QuickPay:
    """Issues payment challenges and checks the phones' assertions; thread-safe."""

    def __init__(
        self,
        engine: sa.Engine,
        clock: Clock,
        *,
        rp: RelyingParty = MILLET_RP,
        partners: Mapping[str, Partner] = PARTNERS,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._rp = rp
        self._partners = partners

    def origins_for(self, partner_id: str | None) -> tuple[str, ...]:
        """The origins an assertion may come from: Millet Pay's, or a registered partner's."""
        if partner_id is None:
            return self._rp.origins
        partner = self._partners.get(partner_id)
        if partner is None:
            known = ", ".join(sorted(self._partners)) or "none"
            raise PartnerUnknown(f"partner {partner_id!r} is not registered; known: {known}")
        return partner.origins

    def begin_payment(
        self, user_id: int, device_id: str, payment: Payment, *, partner_id: str | None = None
    ) -> str:
        """WebAuthn request options (JSON) for the phone to approve `payment`.

        `PartnerUnknown`, `UserNotFound` or `DeviceNotFound` (no active device by that id).
        """
        self.origins_for(partner_id)
        key = user_key(user_id)
        challenge = os.urandom(CHALLENGE_NONCE_BYTES) + payment_hash(payment)
        with write(self._engine) as conn:
            require_user(conn, key)
            credential_id = conn.execute(
                sa.select(credentials.c.credential_id)
                .join(devices, devices.c.id == credentials.c.device_key)
                .where(
                    devices.c.user_id == key,
                    devices.c.device_id == device_id,
                    devices.c.status == DeviceStatus.ACTIVE,
                    credentials.c.status == CredentialStatus.ACTIVE,
                )
            ).scalar_one_or_none()
            if credential_id is None:
                raise DeviceNotFound(f"no active device {device_id!r} for this user")
            insert_challenge(
                conn,
                self._clock,
                challenge,
                key,
                ChallengePurpose.PAYMENT,
                device_id=device_id,
                credential_id=credential_id,
                payment_hash=payment_hash(payment),
                partner_id=partner_id,
            )
        options = generate_authentication_options(
            rp_id=self._rp.rp_id,
            challenge=challenge,
            timeout=CHALLENGE_TTL_S * 1000,
            allow_credentials=[PublicKeyCredentialDescriptor(id=credential_id)],
            user_verification=UserVerificationRequirement.REQUIRED,
        )
        return options_to_json(options)

    def finish_payment(self, user_id: int, payment: Payment, assertion_json: str) -> Approval:
        """Approve `payment` with the phone's assertion; the challenge is spent either way.

        Raises `ResponseMalformed`, `ChallengeUnknown` / `ChallengeUsed` / `ChallengeExpired`,
        `PaymentMismatch`,
        `CredentialRevoked`, `UserVerificationMissing`, `SignCountNotIncreased` or
        `AssertionInvalid`; nothing is approved then.
        """
        key = user_key(user_id)
        challenge = claim_challenge(
            self._engine,
            self._clock,
            client_challenge(assertion_json),
            key,
            ChallengePurpose.PAYMENT,
        )
        expected_hash = payment_hash(payment)
        if challenge.payment_hash != expected_hash or challenge.challenge[-32:] != expected_hash:
            raise PaymentMismatch(
                f"this approval was asked for another payment than {payment.payment_id!r}"
            )
        assertion = _parse_assertion(assertion_json)
        if assertion.raw_id != challenge.credential_id:
            raise AssertionInvalid("the assertion is signed by another credential than asked")
        stored = self._credential(assertion.raw_id)
        if stored.status != CredentialStatus.ACTIVE:
            raise CredentialRevoked("this phone was unbound; its key approves nothing")
        new_count = _check_flags_and_counter(assertion, stored.sign_count)
        try:
            verify_authentication_response(
                credential=assertion,
                expected_challenge=challenge.challenge,
                expected_rp_id=self._rp.rp_id,
                expected_origin=list(self.origins_for(challenge.partner_id)),
                credential_public_key=stored.public_key,
                credential_current_sign_count=stored.sign_count,
                require_user_verification=True,
            )
        except WebAuthnException as exc:
            raise AssertionInvalid(f"the assertion was refused: {exc}") from None
        now_ns = self._clock.now_ns()
        self._advance_counter(assertion.raw_id, stored.sign_count, new_count, now_ns)
        assert challenge.device_id is not None
        return Approval(
            payment,
            challenge.device_id,
            assertion.raw_id,
            new_count,
            challenge.partner_id,
            now_ns,
        )

    def _credential(self, credential_id: bytes) -> Any:
        with read(self._engine) as conn:
            row = conn.execute(
                sa.select(credentials).where(credentials.c.credential_id == credential_id)
            ).one_or_none()
        if row is None:
            raise AssertionInvalid("the assertion names no known credential")
        return row

    def _advance_counter(
        self, credential_id: bytes, old_count: int, new_count: int, now_ns: int
    ) -> None:
        """Move the counter only from the value checked, and only while still active, so a
        concurrent use or an unbinding in between refuses this approval."""
        with write(self._engine) as conn:
            updated = conn.execute(
                sa.update(credentials)
                .where(
                    credentials.c.credential_id == credential_id,
                    credentials.c.sign_count == old_count,
                    credentials.c.status == CredentialStatus.ACTIVE,
                )
                .values(sign_count=new_count, last_used_at=now_ns)
            ).rowcount
            if updated == 1:
                return
            status = conn.execute(
                sa.select(credentials.c.status).where(credentials.c.credential_id == credential_id)
            ).scalar_one()
        if status != CredentialStatus.ACTIVE:
            raise CredentialRevoked("this phone was unbound; its key approves nothing")
        raise SignCountNotIncreased("the credential was used concurrently; ask for a new one")


def _parse_assertion(assertion_json: str) -> AuthenticationCredential:
    try:
        return parse_authentication_credential_json(assertion_json)
    except WebAuthnException as exc:
        raise AssertionInvalid(f"malformed assertion: {exc}") from None


def _check_flags_and_counter(assertion: AuthenticationCredential, stored_count: int) -> int:
    """The assertion's new counter, after the checks that get an error of their own."""
    try:
        auth_data = parse_authenticator_data(bytes(assertion.response.authenticator_data))
    except (WebAuthnException, ValueError) as exc:
        raise AssertionInvalid(f"malformed authenticatorData: {exc}") from None
    if not auth_data.flags.uv:
        raise UserVerificationMissing(
            "the phone did not verify the user (no fingerprint match); quick pay requires it"
        )
    new_count: int = auth_data.sign_count
    if (new_count > 0 or stored_count > 0) and new_count <= stored_count:
        raise SignCountNotIncreased(
            f"the signature counter went from {stored_count} to {new_count}, not forward"
        )
    return new_count
