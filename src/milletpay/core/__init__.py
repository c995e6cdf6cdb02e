"""Foundations shared by every package: money, clocks, ids, error codes and data keys.

`core` imports nothing else from Millet Pay, and nothing outside the standard library
except `cryptography` (for `keyring`).
"""

from milletpay.core.clock import Clock, ManualClock, SystemClock
from milletpay.core.errors import MilletError
from milletpay.core.ids import IdGenerator
from milletpay.core.keyring import KeyRing
from milletpay.core.money import Money

__all__ = ["Clock", "IdGenerator", "KeyRing", "ManualClock", "MilletError", "Money", "SystemClock"]
