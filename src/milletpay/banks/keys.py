"""The issuer keys a bank needs, behind a small protocol: the key store is elsewhere.

A bank asks `BankKeys` for its card verification key (CVK, a double-length DES key:
CVK A then CVK B) and its PIN verification key (PVK). The issuer key store of
`milletpay.emv.keys` is the production provider; `GeneratedBankKeys` draws random keys
per bank for tests and the simulator. Keys never appear in a repr, a message or a log.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
from typing import Protocol

from milletpay.banks.data import BankSpec, banks
from milletpay.emv.keys import IssuerKeyStore

CVK_BYTES = 16  # two-key triple DES: CVK A (8 bytes) then CVK B (8 bytes)
PVK_BYTES = 32  # an HMAC-SHA256 key
FIRST_VERSION = 1
_PVK_LABEL = b"millet bank pin verification key"
#: A bound on the IINs of one token range the key store keys (the data has one each).
TOKEN_IINS_PER_BANK_MAX = 100


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


class IssuerKeyStoreKeys:
    """`BankKeys` from the issuer key store of `milletpay.emv.keys` (production).

    The CVK is the store's CVK as it is; the PVK is derived from the store's PIN key
    (HMAC-SHA256 of a fixed label under it), as the bank keeps an HMAC of each PIN. Both
    are the keys' first versions: a card does not record the key version it was issued
    under yet, so a newer version would invalidate every CVN2 and PIN issued before it.
    """

    def __init__(self, store: IssuerKeyStore) -> None:
        self._store = store

    def __repr__(self) -> str:
        return "IssuerKeyStoreKeys()"

    def cvk(self, bank_code: str) -> bytes:
        key = self._store.cvk(bank_code, FIRST_VERSION).key
        assert len(key) == CVK_BYTES
        return key

    def pvk(self, bank_code: str) -> bytes:
        pin_key = self._store.pin_key(bank_code, FIRST_VERSION).key
        return hmac.new(pin_key, _PVK_LABEL, hashlib.sha256).digest()


def issuer_bins() -> list[tuple[str, str]]:
    """(bank code, IIN) of every card product of every bank, then of every IIN of each
    bank's token range (the token service derives limited-use keys from an IMK-AC of
    the token's IIN): what the key store keys."""
    cards = [(spec.code, product.iin) for spec in banks() for product in spec.products]
    return cards + [(spec.code, iin) for spec in banks() for iin in token_iins(spec)]


def token_iins(spec: BankSpec) -> list[str]:
    """The IINs of the bank's token range, first to last."""
    first, last = int(spec.token_iin_range.first), int(spec.token_iin_range.last)
    assert last - first < TOKEN_IINS_PER_BANK_MAX, f"{spec.code}: token range too wide"
    return [f"{iin:06d}" for iin in range(first, last + 1)]
