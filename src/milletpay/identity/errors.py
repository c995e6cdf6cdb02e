"""Identity errors: input a caller must fix, each with a stable `code`.

A wrong PIN or a wrong one-time code is not an error of the program: it is an answer
(`PinStatus`, `OtpStatus`), returned rather than raised.
"""

from __future__ import annotations

from milletpay.core.errors import MilletError


class IdentityError(MilletError):
    code = "identity_error"


class PhoneInvalid(IdentityError):
    code = "phone_invalid"


class PhoneTaken(IdentityError):
    code = "phone_taken"


class NationalIdInvalid(IdentityError):
    """`part` names what is wrong: length, format, checksum, birth_date or birth_place."""

    code = "national_id_invalid"

    def __init__(self, message: str, *, part: str) -> None:
        super().__init__(message)
        self.part = part


class RealNameInvalid(IdentityError):
    code = "real_name_invalid"


class UserNotFound(IdentityError):
    code = "user_not_found"


class ChannelUnknown(IdentityError):
    code = "kyc_channel_unknown"


class ClassIIIAlreadyHeld(IdentityError):
    """Another user already holds the one Class III account allowed per ID number."""

    code = "class_iii_already_held"


class PinFormatInvalid(IdentityError):
    code = "pin_format_invalid"


class PinTooSimple(IdentityError):
    code = "pin_too_simple"


class OtpPurposeUnknown(IdentityError):
    code = "otp_purpose_unknown"


class PinAlreadySet(IdentityError):
    code = "pin_already_set"


class OtpRateLimited(IdentityError):
    code = "otp_rate_limited"
