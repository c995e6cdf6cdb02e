"""Foundations shared by every package: money, clocks, ids and error codes.

`core` imports nothing else from Millet Pay and nothing outside the standard library.
"""

from milletpay.core.clock import Clock, ManualClock, SystemClock
from milletpay.core.errors import MilletError
from milletpay.core.ids import IdGenerator
from milletpay.core.money import Money

__all__ = ["Clock", "IdGenerator", "ManualClock", "MilletError", "Money", "SystemClock"]
