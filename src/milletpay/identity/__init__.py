"""Identity: users, real-name KYC tiers and their limits, payment PIN, one-time codes.

`identity` stores who a user is and how well that is verified; it moves no money and
imports only `core` and `store`. Devices, device-bound keys and the HTTP API come later.
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
from milletpay.identity.pin import PIN_HASHING_FAST, PinCheck, PinHashing, PinStatus
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
    "RealNameInvalid",
    "SimulatedSms",
    "SmsChannel",
    "SmsMessage",
    "User",
    "UserNotFound",
    "allows",
    "tier_for",
]
