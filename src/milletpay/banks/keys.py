"""The issuer keys a bank needs, behind a small protocol: the key store is elsewhere.

A bank asks `BankKeys` for its card verification key (CVK, a double-length DES key:
CVK A then CVK B) and its PIN verification key (PVK). The issuer key store of
`milletpay.emv.keys` is the production provider; `GeneratedBankKeys` draws random keys
per bank for tests and the simulator. Keys never appear in a repr, a message or a log.
"""

from __future__ import annotations

import os
import threading
from typing import Protocol

CVK_BYTES = 16  # two-key triple DES: CVK A (8 bytes) then CVK B (8 bytes)
PVK_BYTES = 32  # an HMAC-SHA256 key


class BankKeys(Protocol):
    def cvk(self, bank_code: str) -> bytes:
        """The bank's card verification key, `CVK_BYTES` long."""
        ...

    def pvk(self, bank_code: str) -> bytes:
        """The bank's PIN verification key, `PVK_BYTES` long."""
        ...


class GeneratedBankKeys:
    """Random keys, drawn per bank on first use and kept in memory; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: dict[tuple[str, str], bytes] = {}

    def __repr__(self) -> str:
        return "GeneratedBankKeys()"

    def _key(self, kind: str, bank_code: str, length: int) -> bytes:
        with self._lock:
            return self._keys.setdefault((kind, bank_code), os.urandom(length))

    def cvk(self, bank_code: str) -> bytes:
        return self._key("cvk", bank_code, CVK_BYTES)

    def pvk(self, bank_code: str) -> bytes:
        return self._key("pvk", bank_code, PVK_BYTES)
