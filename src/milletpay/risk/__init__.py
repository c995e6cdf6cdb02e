"""Risk: pure decisions on whether an operation may go ahead.

`risk` decides from numbers it is given (the user's KYC tier, what they have already
done); it reads no storage and moves no money. The wallet gathers the numbers.
"""

from milletpay.risk.limits import (
    LIMITS,
    VELOCITY_OPERATIONS_PER_HOUR_MAX,
    VELOCITY_WINDOW_S,
    Decision,
    DeclineCode,
    LimitUnit,
    OperationKind,
    OperationLimits,
    Usage,
    counts_as_balance_payment,
    decide,
)

__all__ = [
    "LIMITS",
    "VELOCITY_OPERATIONS_PER_HOUR_MAX",
    "VELOCITY_WINDOW_S",
    "Decision",
    "DeclineCode",
    "LimitUnit",
    "OperationKind",
    "OperationLimits",
    "Usage",
    "counts_as_balance_payment",
    "decide",
]
