"""The card as the phone sends it to the token service: sealed to the TSP's P-256 key.

ECDH-ES: the phone makes a fresh P-256 key pair for each card, agrees a secret with the
TSP's public key, derives a 256-bit key with HKDF-SHA256 (info binds the version and the
ephemeral public key) and encrypts the card with AES-256-GCM. The envelope is JSON:

    {"v": 1, "epk": "<base64 of the 65-byte uncompressed ephemeral public key>",
     "nonce": "<base64 of 12 bytes>", "ct": "<base64 of ciphertext and 16-byte tag>"}

and the plaintext inside is JSON `{"pan": "...", "expiry": "MM/YY", "cvn2": "..."}`. The
AAD is the version header, so an envelope moved to another version does not open.

The TSP's key pair is derived from the platform key ring (`KeyRing.derive`), so every
server holds it without a key file of its own; `tsp_public_key` is what the phone gets.
Anything wrong with an envelope is one error, `card_envelope_invalid`, which never says
which part failed to open (and never holds the card).

The other direction uses the same format: the token service seals what only the phone
may read (its limited-use key and token data) to a one-time P-256 key the phone sends
with the request (`seal_for_phone`), under a different HKDF label, so neither the
transport nor a log ever carries a key in clear.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from milletpay.cards.errors import CardEnvelopeInvalid, Cvn2Invalid, PhoneKeyInvalid
from milletpay.cards.pan import Expiry, Pan
from milletpay.core.keyring import KeyRing

ENVELOPE_VERSION: Final = 1
#: The largest envelope read (a card is < 100 bytes; the envelope ~250 characters).
ENVELOPE_CHARS_MAX: Final = 1024
TSP_KEY_PURPOSE: Final = b"milletpay/cards/tsp-envelope-key/v1"
CVN2_DIGITS: Final = 3
_HKDF_INFO: Final = b"milletpay/cards/tsp-envelope/v1|"
_PHONE_HKDF_INFO: Final = b"milletpay/cards/phone-keys/v1|"
_AAD: Final = b'{"v":1}'
_NONCE_BYTES: Final = 12
_POINT_BYTES: Final = 65  # uncompressed P-256 point: 04 || x || y
_CURVE: Final = ec.SECP256R1()
# The order of P-256's base point: a derived scalar is reduced into [1, n - 1].
_P256_ORDER: Final = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


@dataclass(frozen=True, slots=True)
class CardDetails:
    """What the envelope holds. Its repr shows the PAN masked and no CVN2."""

    pan: Pan
    expiry: Expiry
    cvn2: str = field(repr=False)


def tsp_private_key(keyring: KeyRing) -> ec.EllipticCurvePrivateKey:
    """The TSP's P-256 private key, the same on every server with the same key ring."""
    seed = int.from_bytes(keyring.derive(TSP_KEY_PURPOSE), "big")
    return ec.derive_private_key(seed % (_P256_ORDER - 1) + 1, _CURVE)


def tsp_public_key(keyring: KeyRing) -> bytes:
    """The TSP's public key for the phone: the 65-byte uncompressed P-256 point."""
    return _point(tsp_private_key(keyring).public_key())


def seal_card_for_tsp(public_key: bytes, pan: Pan | str, expiry: Expiry, cvn2: str) -> str:
    """The phone's side: the card sealed to the TSP's `public_key`, as envelope JSON."""
    card = pan if isinstance(pan, Pan) else Pan(pan)
    plaintext = json.dumps({"pan": card.clear_digits(), "expiry": str(expiry), "cvn2": cvn2})
    return _seal(public_key, plaintext.encode("ascii"), _HKDF_INFO)


def open_card_envelope(keyring: KeyRing, envelope: str) -> CardDetails:
    """The card inside `envelope`; `CardEnvelopeInvalid` if it is malformed, too large,
    sealed to another key, or tampered with; `PanInvalid` / `ExpiryInvalid` if it opens
    but holds a bad number or date."""
    fields = _open_json(tsp_private_key(keyring), envelope, _HKDF_INFO)
    try:
        pan, expiry, cvn2 = fields["pan"], fields["expiry"], fields["cvn2"]
    except KeyError:
        raise _invalid("it does not hold pan, expiry and cvn2") from None
    if not (isinstance(pan, str) and isinstance(expiry, str) and isinstance(cvn2, str)):
        raise _invalid("its fields are not text")
    if not (len(cvn2) == CVN2_DIGITS and cvn2.isascii() and cvn2.isdigit()):
        raise Cvn2Invalid(f"a CVN2 is {CVN2_DIGITS} digits")
    return CardDetails(Pan(pan), Expiry.parse(expiry), cvn2)


def phone_key_point(public_key: bytes) -> bytes:
    """`public_key` if it is an uncompressed P-256 point (what a phone sends to get keys
    sealed to it); `PhoneKeyInvalid` otherwise."""
    if len(public_key) != _POINT_BYTES:
        raise PhoneKeyInvalid(f"a phone key is a {_POINT_BYTES}-byte uncompressed P-256 point")
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(_CURVE, public_key)
    except ValueError:
        raise PhoneKeyInvalid("the phone key is not a point on P-256") from None
    return public_key


def seal_for_phone(public_key: bytes, payload: Mapping[str, object]) -> str:
    """The token service's side of a key delivery: `payload` (JSON) sealed to the phone's
    one-time P-256 `public_key`, in the envelope format, under its own HKDF label so an
    envelope never opens in the other direction. Only the phone's private key opens it."""
    plaintext = json.dumps(dict(payload), separators=(",", ":")).encode("ascii")
    return _seal(phone_key_point(public_key), plaintext, _PHONE_HKDF_INFO)


def open_for_phone(private_key: ec.EllipticCurvePrivateKey, envelope: str) -> dict[str, object]:
    """The phone's side of a key delivery: the payload `seal_for_phone` sealed."""
    return _open_json(private_key, envelope, _PHONE_HKDF_INFO)


def _seal(public_key: bytes, plaintext: bytes, info: bytes) -> str:
    """ECDH-ES to `public_key` with a fresh ephemeral key, HKDF(`info` || epk), AES-GCM."""
    recipient = ec.EllipticCurvePublicKey.from_encoded_point(_CURVE, public_key)
    ephemeral = ec.generate_private_key(_CURVE)
    epk = _point(ephemeral.public_key())
    key = _content_key(ephemeral.exchange(ec.ECDH(), recipient), epk, info)
    nonce = os.urandom(_NONCE_BYTES)
    ciphertext = AESGCM(key).encrypt(nonce, plaintext, _AAD)
    return json.dumps(
        {"v": ENVELOPE_VERSION, "epk": _b64(epk), "nonce": _b64(nonce), "ct": _b64(ciphertext)}
    )


def _open_json(
    private_key: ec.EllipticCurvePrivateKey, envelope: str, info: bytes
) -> dict[str, object]:
    epk, nonce, ciphertext = _parse(envelope)
    try:
        peer = ec.EllipticCurvePublicKey.from_encoded_point(_CURVE, epk)
        shared = private_key.exchange(ec.ECDH(), peer)
        plaintext = AESGCM(_content_key(shared, epk, info)).decrypt(nonce, ciphertext, _AAD)
        fields = json.loads(plaintext)
    except (ValueError, InvalidTag, TypeError):
        raise _invalid("it does not open") from None
    if not isinstance(fields, dict):
        raise _invalid("it does not hold an object")
    return fields


def _parse(envelope: str) -> tuple[bytes, bytes, bytes]:
    if not isinstance(envelope, str) or len(envelope) > ENVELOPE_CHARS_MAX:
        raise _invalid(f"it is not text of at most {ENVELOPE_CHARS_MAX} characters")
    try:
        document = json.loads(envelope)
    except ValueError:
        raise _invalid("it is not JSON") from None
    if not isinstance(document, dict) or set(document) != {"v", "epk", "nonce", "ct"}:
        raise _invalid("it needs exactly v, epk, nonce and ct")
    if document["v"] != ENVELOPE_VERSION or isinstance(document["v"], bool):
        raise _invalid(f"version {document['v']!r} is not {ENVELOPE_VERSION}")
    epk, nonce, ciphertext = (_unb64(document[name], name) for name in ("epk", "nonce", "ct"))
    if len(epk) != _POINT_BYTES or len(nonce) != _NONCE_BYTES:
        raise _invalid(f"epk must be {_POINT_BYTES} bytes and nonce {_NONCE_BYTES}")
    return epk, nonce, ciphertext


def _content_key(shared_secret: bytes, epk: bytes, info: bytes) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info + epk)
    return hkdf.derive(shared_secret)


def _point(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(value: object, name: str) -> bytes:
    if not isinstance(value, str):
        raise _invalid(f"{name} is not base64 text")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise _invalid(f"{name} is not base64") from None


def _invalid(why: str) -> CardEnvelopeInvalid:
    return CardEnvelopeInvalid(f"the card envelope is refused: {why}")
