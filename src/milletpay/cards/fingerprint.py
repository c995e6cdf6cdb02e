"""The keyed fingerprint of a card number: how the vault finds a PAN without decrypting.

HMAC-SHA256 under a key derived from the key ring. A plain hash would not do: a PAN has
a known BIN, a known length and a check digit, so the few billion candidates behind a
hash are enumerated in minutes. Without the key the fingerprint says nothing.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final

from milletpay.cards.pan import Pan
from milletpay.core.keyring import KeyRing

FINGERPRINT_PURPOSE: Final = b"milletpay/cards/pan-fingerprint/v1"
FINGERPRINT_BYTES: Final = 32  # HMAC-SHA256
_KEY_CHECK_MESSAGE: Final = b"milletpay/cards/pan-fingerprint/key-check"


def fingerprint(keyring: KeyRing, pan: Pan) -> bytes:
    key = keyring.derive(FINGERPRINT_PURPOSE)
    return hmac.new(key, pan.clear_digits().encode("ascii"), hashlib.sha256).digest()


def key_check(keyring: KeyRing) -> bytes:
    """A value that changes when the fingerprint key changes, and reveals nothing of it:
    the vault keeps it to refuse fingerprints made under another key."""
    key = keyring.derive(FINGERPRINT_PURPOSE)
    return hmac.new(key, _KEY_CHECK_MESSAGE, hashlib.sha256).digest()
