"""Identity: users, real-name KYC tiers and their limits, payment PIN, one-time codes,
bound devices and WebAuthn quick pay (`identity.devices`, `identity.quickpay`).

`identity` stores who a user is, how well that is verified and which devices may approve
payments; it moves no money and imports only `core` and `store` of Millet Pay.
"""

from milletpay.identity.errors import (
    ChannelUnknown,
    ClassIIIAlreadyHeld,
    IdentityError,
    NationalIdInvalid,
    OtpPurposeUnknown,
    OtpRateLimited,
    PhoneInvalid,
    PhoneTaken,
    PinAlreadySet,
    PinFormatInvalid,
    PinTooSimple,
    RealNameInvalid,
    UserNotFound,
)
from milletpay.identity.kyc import TIERS, Channel, KycTier, LimitPeriod, allows, tier_for
from milletpay.identity.otp import OtpPurpose, OtpStatus, SimulatedSms, SmsChannel, SmsMessage
from milletpay.identity.pin import PIN_HASHING_FAST, PinCheck, PinHashing, PinStatus, PinTry
from milletpay.identity.users import IdentityService, User

__all__ = [
    "PIN_HASHING_FAST",
    "TIERS",
    "Channel",
    "ChannelUnknown",
    "ClassIIIAlreadyHeld",
    "IdentityError",
    "IdentityService",
    "KycTier",
    "LimitPeriod",
    "NationalIdInvalid",
    "OtpPurpose",
    "OtpPurposeUnknown",
    "OtpRateLimited",
    "OtpStatus",
    "PhoneInvalid",
    "PhoneTaken",
    "PinAlreadySet",
    "PinCheck",
    "PinFormatInvalid",
    "PinHashing",
    "PinStatus",
    "PinTooSimple",
    "PinTry",
    "RealNameInvalid",
    "SimulatedSms",
    "SmsChannel",
    "SmsMessage",
    "User",
    "UserNotFound",
    "allows",
    "tier_for",
]
