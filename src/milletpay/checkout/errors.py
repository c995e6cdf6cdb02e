"""The checkout's errors: input the caller must fix, each with a stable code and, where
one field is at fault, its name."""

from __future__ import annotations

from milletpay.core.errors import MilletError


class CheckoutError(MilletError):
    code = "checkout_error"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.field = field


class MerchantInvalid(CheckoutError):
    """An onboarding request with a field that is wrong; nothing is stored."""

    code = "merchant_invalid"


class MerchantNotFound(CheckoutError):
    code = "merchant_not_found"


class MerchantNotActive(CheckoutError):
    code = "merchant_not_active"


class ApiKeyNotFound(CheckoutError):
    """No such key of this merchant: another merchant's key id answers the same."""

    code = "api_key_not_found"


class ApiKeyLimitReached(CheckoutError):
    code = "api_key_limit_reached"


class PaymentIntentInvalid(CheckoutError):
    """A payment intent request with a field that is wrong; nothing is stored."""

    code = "payment_intent_invalid"


class PaymentIntentNotFound(CheckoutError):
    """No such intent of this merchant (or a wrong client secret): the same answer."""

    code = "payment_intent_not_found"


class PaymentIntentConflict(CheckoutError):
    """The intent is not in a state that allows this: the message names the state."""

    code = "payment_intent_unexpected_state"


class MerchantOrderReused(CheckoutError):
    """The merchant's order id names an intent with another amount or capture method."""

    code = "merchant_order_reused"


class CoinsNotAccepted(CheckoutError):
    """Coins pay only merchants of a digital-goods MCC; nothing is changed."""

    code = "coins_not_accepted"


class CoinAmountNotWhole(CheckoutError):
    """An amount paid or refunded in coins must be a whole number of coins (coins have no
    minor unit, and a price is never rounded); nothing is changed."""

    code = "coin_amount_not_whole"


class FundingNotAvailable(CheckoutError):
    """The platform runs without this funding source."""

    code = "funding_not_available"
