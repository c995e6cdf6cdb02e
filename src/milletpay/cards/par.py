"""Payment Account Reference (PAR, EMV tag 9F24): one card account's id across its tokens.

EMVCo: 29 upper-case alphanumeric characters, the 4-character BIN Controller Identifier
then 25 characters unique to the account. Here the 25 are the base32 of an HMAC of the
card's fingerprint, under a key of their own derived from the key ring: the same card
always gets the same PAR, and a PAR leads back to neither the PAN nor the fingerprint.
The vault stores the PAR with the card, so re-encryption, key rotation and a re-issued
PAN (`PanVault.replace_pan`) leave it as it is.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from typing import Final

from milletpay.core.keyring import KeyRing

PAR_CHARS: Final = 29
BIN_CONTROLLER_ID_CHARS: Final = 4
PAR_PURPOSE: Final = b"milletpay/cards/par/v1"
#: Millet Pay's own card network (the sandbox) as BIN controller; EMVCo assigns the real ones.
MILLET_BIN_CONTROLLER_ID: Final = "M001"
_ACCOUNT_CHARS: Final = PAR_CHARS - BIN_CONTROLLER_ID_CHARS  # 25 base32 chars = 125 bits
_PAR_PATTERN: Final = re.compile(r"[0-9A-Z]{29}")
_CONTROLLER_PATTERN: Final = re.compile(r"[0-9A-Z]{4}")


def derive_par(keyring: KeyRing, fingerprint: bytes, bin_controller_id: str) -> str:
    assert _CONTROLLER_PATTERN.fullmatch(bin_controller_id), "4 upper-case alphanumerics"
    key = keyring.derive(PAR_PURPOSE)
    digest = hmac.new(key, fingerprint, hashlib.sha256).digest()
    account = base64.b32encode(digest).decode("ascii")[:_ACCOUNT_CHARS]
    par = bin_controller_id + account
    assert is_par(par)
    return par


def is_par(text: str) -> bool:
    """29 upper-case letters and digits, as EMVCo specifies."""
    return _PAR_PATTERN.fullmatch(text) is not None
