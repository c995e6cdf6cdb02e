"""Cards: the PAN vault. Card numbers are sealed at rest and masked everywhere else.

The public surface is `__all__`; `PanVault.reveal` is for the token service and the
card network only (see `vault.py`).
"""

from milletpay.cards.errors import (
    CardError,
    ExpiryInvalid,
    PanAlreadyVaulted,
    PanInvalid,
    VaultEntryUnreadable,
    VaultKeyMismatch,
    VaultRefUnknown,
)
from milletpay.cards.pan import (
    MASK_HEAD_DIGITS,
    MASK_TAIL_DIGITS,
    PAN_DIGITS_MAX,
    PAN_DIGITS_MIN,
    Expiry,
    Pan,
    mask_pan,
    validate_pan,
)
from milletpay.cards.par import MILLET_BIN_CONTROLLER_ID, PAR_CHARS, is_par
from milletpay.cards.vault import (
    ROTATE_BATCH_ROWS,
    PanVault,
    RevealedCard,
    RotateProgress,
    VaultEntry,
    VaultRef,
)

__all__ = [
    "MASK_HEAD_DIGITS",
    "MASK_TAIL_DIGITS",
    "MILLET_BIN_CONTROLLER_ID",
    "PAN_DIGITS_MAX",
    "PAN_DIGITS_MIN",
    "PAR_CHARS",
    "ROTATE_BATCH_ROWS",
    "CardError",
    "Expiry",
    "ExpiryInvalid",
    "Pan",
    "PanAlreadyVaulted",
    "PanInvalid",
    "PanVault",
    "RevealedCard",
    "RotateProgress",
    "VaultEntry",
    "VaultEntryUnreadable",
    "VaultKeyMismatch",
    "VaultRef",
    "VaultRefUnknown",
    "is_par",
    "mask_pan",
    "validate_pan",
]
