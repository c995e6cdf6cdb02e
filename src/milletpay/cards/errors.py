"""Card vault errors: input a caller must fix, each with a stable `code`.

No message ever carries a card number in clear: at most the mask (first 6, last 4).
"""

from __future__ import annotations

from milletpay.core.errors import MilletError


class CardError(MilletError):
    code = "card_error"


class PanInvalid(CardError):
    """`part` names what is wrong: `characters`, `length` or `checksum`."""

    code = "pan_invalid"

    def __init__(self, message: str, *, part: str) -> None:
        super().__init__(message)
        self.part = part


class ExpiryInvalid(CardError):
    code = "expiry_invalid"


class VaultRefUnknown(CardError):
    code = "vault_ref_unknown"


class PanAlreadyVaulted(CardError):
    """`replace_pan` to a number the vault already holds under another reference."""

    code = "pan_already_vaulted"


class VaultEntryUnreadable(CardError):
    """A row does not open: tampered bytes, a row swapped with another (AAD), or a key
    version the key ring does not hold."""

    code = "vault_entry_unreadable"


class VaultKeyMismatch(CardError):
    """The fingerprint key is not the one the vault's rows were fingerprinted with: the
    key ring's oldest (root) key was removed or replaced."""

    code = "vault_fingerprint_key_changed"


class CardEnvelopeInvalid(CardError):
    """The phone's sealed card does not open: malformed, too large, sealed to another
    key, or tampered with. Nothing is stored."""

    code = "card_envelope_invalid"


class PhoneKeyInvalid(CardError):
    """The key a phone asked its keys to be sealed to is not a P-256 point."""

    code = "phone_key_invalid"


class Cvn2Invalid(CardError):
    code = "cvn2_invalid"


class TokenRequestInvalid(CardError):
    """A token request the token service cannot read (a bad device id)."""

    code = "token_request_invalid"


class TokenUnknown(CardError):
    code = "token_unknown"


class CardNotVaulted(CardError):
    """An issuer event or re-issue for a card the token service never tokenized."""

    code = "card_not_vaulted"


class TokenBusy(CardError):
    """The token changed under every attempt (concurrent changes): try again."""

    code = "token_busy"


class TokenNumbersExhausted(CardError):
    """Every number drawn was taken: the issuer's token range is (nearly) full."""

    code = "token_numbers_exhausted"
