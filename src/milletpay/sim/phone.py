"""A simulated phone: a WebAuthn platform authenticator with a fingerprint reader.

It speaks only WebAuthn's JSON (the options a server sends, the `PublicKeyCredential`
JSON a browser or app returns), so a real phone can take its place. Key pairs
(ECDSA P-256) are made inside `_SecureElement` and the private keys never leave it:
the phone hands out public keys (COSE), attestations (fmt "none") and assertions only.
It signs only after a fingerprint match by `touch` within `TOUCH_WINDOW_S` of the
injected clock; one match allows one signature.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url, encode_cbor

from milletpay.core.clock import NS_PER_S, Clock

#: How long after a matching touch the phone will still sign.
TOUCH_WINDOW_S = 30
CREDENTIAL_ID_BYTES = 32
#: authenticatorData flags (WebAuthn Level 2, 6.1).
FLAG_UP = 0x01
FLAG_UV = 0x04
FLAG_AT = 0x40
#: COSE: key type EC2, algorithm ES256, curve P-256 (RFC 8152 / RFC 9053).
_COSE_KTY_EC2 = 2
_COSE_ALG_ES256 = -7
_COSE_CRV_P256 = 1
#: The phone model's AAGUID (all zero is what "none" attestation sends).
AAGUID_NONE = bytes(16)


@dataclass
class _Key:
    rp_id: str
    private_key: ec.EllipticCurvePrivateKey
    sign_count: int


class _SecureElement:
    """Holds the private keys; answers with public keys and signatures, nothing else."""

    def __init__(self) -> None:
        self._keys: dict[bytes, _Key] = {}

    def create(self, rp_id: str) -> tuple[bytes, bytes]:
        """A new key pair for `rp_id`: its credential id and its COSE public key."""
        credential_id = os.urandom(CREDENTIAL_ID_BYTES)
        private_key = ec.generate_private_key(ec.SECP256R1())
        self._keys[credential_id] = _Key(rp_id, private_key, 0)
        numbers = private_key.public_key().public_numbers()
        cose_key = {
            1: _COSE_KTY_EC2,
            3: _COSE_ALG_ES256,
            -1: _COSE_CRV_P256,
            -2: numbers.x.to_bytes(32, "big"),
            -3: numbers.y.to_bytes(32, "big"),
        }
        return credential_id, encode_cbor(cose_key)

    def pick(self, rp_id: str, allowed: list[bytes]) -> bytes | None:
        """The first allowed credential this phone holds for `rp_id`."""
        for credential_id in allowed:
            key = self._keys.get(credential_id)
            if key is not None and key.rp_id == rp_id:
                return credential_id
        return None

    def sign(
        self, credential_id: bytes, flags: int, client_data_hash: bytes
    ) -> tuple[bytes, bytes]:
        """authenticatorData (counter moved forward) and its ES256 signature."""
        key = self._keys[credential_id]
        key.sign_count += 1
        auth_data = _auth_data(key.rp_id, flags, key.sign_count)
        signature = key.private_key.sign(auth_data + client_data_hash, ec.ECDSA(hashes.SHA256()))
        return auth_data, signature


class SimulatedPhone:
    """One phone: a device id, a model, a fingerprint reader and a secure element."""

    def __init__(self, device_id: str, model: str, clock: Clock) -> None:
        self.device_id = device_id
        self.model = model
        self._clock = clock
        self._element = _SecureElement()
        self._fingers: set[str] = set()
        self._matched_at_ns: int | None = None

    # -- the fingerprint reader -------------------------------------------------------

    def enroll_fingerprint(self, finger: str) -> None:
        self._fingers.add(finger)

    def touch(self, finger: str) -> bool:
        """Put `finger` on the reader; True on a match. A mismatch cancels an earlier match."""
        matched = finger in self._fingers
        self._matched_at_ns = self._clock.now_ns() if matched else None
        return matched

    def _user_verified(self) -> bool:
        """Spend the latest match if it is recent enough."""
        matched_at_ns, self._matched_at_ns = self._matched_at_ns, None
        if matched_at_ns is None:
            return False
        return self._clock.now_ns() - matched_at_ns <= TOUCH_WINDOW_S * NS_PER_S

    # -- WebAuthn ---------------------------------------------------------------------

    def create_credential(self, options_json: str, origin: str) -> str | None:
        """navigator.credentials.create(): the registration response JSON, or None when no
        fingerprint matched."""
        options = json.loads(options_json)
        if not self._user_verified():
            return None
        rp_id = options["rp"]["id"]
        credential_id, cose_key = self._element.create(rp_id)
        client_data = _client_data("webauthn.create", options["challenge"], origin)
        attested = AAGUID_NONE + struct.pack(">H", len(credential_id)) + credential_id + cose_key
        auth_data = _auth_data(rp_id, FLAG_UP | FLAG_UV | FLAG_AT, 0) + attested
        attestation = encode_cbor({"fmt": "none", "attStmt": {}, "authData": auth_data})
        response = {
            "clientDataJSON": bytes_to_base64url(client_data),
            "attestationObject": bytes_to_base64url(attestation),
            "transports": ["internal"],
        }
        return _credential_json(credential_id, response)

    def get_assertion(
        self, options_json: str, origin: str, *, verify_user: bool = True
    ) -> str | None:
        """navigator.credentials.get(): the assertion JSON, or None when no fingerprint
        matched or the phone holds no allowed credential.

        `verify_user=False` models an authenticator that signs on mere presence (a tap,
        no fingerprint): the UV flag is then clear, and a quick-pay server must refuse it.
        """
        options = json.loads(options_json)
        allowed = [base64url_to_bytes(c["id"]) for c in options.get("allowCredentials", [])]
        credential_id = self._element.pick(options["rpId"], allowed)
        if credential_id is None:
            return None
        if verify_user and not self._user_verified():
            return None
        flags = FLAG_UP | FLAG_UV if verify_user else FLAG_UP
        client_data = _client_data("webauthn.get", options["challenge"], origin)
        auth_data, signature = self._element.sign(
            credential_id, flags, hashlib.sha256(client_data).digest()
        )
        response = {
            "clientDataJSON": bytes_to_base64url(client_data),
            "authenticatorData": bytes_to_base64url(auth_data),
            "signature": bytes_to_base64url(signature),
        }
        return _credential_json(credential_id, response)


def _auth_data(rp_id: str, flags: int, sign_count: int) -> bytes:
    return hashlib.sha256(rp_id.encode()).digest() + struct.pack(">BI", flags, sign_count)


def _client_data(kind: str, challenge_b64url: str, origin: str) -> bytes:
    data = {"type": kind, "challenge": challenge_b64url, "origin": origin, "crossOrigin": False}
    return json.dumps(data, separators=(",", ":")).encode()


def _credential_json(credential_id: bytes, response: dict[str, Any]) -> str:
    return json.dumps(
        {
            "id": bytes_to_base64url(credential_id),
            "rawId": bytes_to_base64url(credential_id),
            "type": "public-key",
            "response": response,
            "clientExtensionResults": {},
            "authenticatorAttachment": "platform",
        }
    )
