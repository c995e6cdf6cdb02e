"""`Banks`: every bank of the data file, each opened on first use; and the wallet's
`BankGateway` on top of them.

`Banks(base_url, keyring, keys, clock)` derives each bank's database from the platform's
URL (`storage.py`) and opens a bank, migrating its database, the first time it is asked
for. `PartnerBankGateway` is the real `BankGateway`: it routes the wallet's link, debit
and credit to the bank by its code; an unknown code is a decline, not an error.
"""

from __future__ import annotations

import threading

from milletpay.banks.authorization import AuthorizationAnswer, AuthorizationRequest
from milletpay.banks.bank import Bank
from milletpay.banks.cardnumbers import is_pan
from milletpay.banks.data import BankSpec, banks
from milletpay.banks.errors import BankUnknown
from milletpay.banks.keys import BankKeys
from milletpay.banks.responses import ResponseCode
from milletpay.core.clock import Clock
from milletpay.core.keyring import KeyRing
from milletpay.wallet.bank import BankAnswer, LinkAnswer


class Banks:
    """The banks of the data file (or of `specs`), opened lazily; thread-safe."""

    def __init__(
        self,
        base_url: str | None,
        keyring: KeyRing,
        keys: BankKeys,
        clock: Clock | None = None,
        *,
        specs: tuple[BankSpec, ...] | None = None,
    ) -> None:
        self._base_url = base_url
        self._keyring = keyring
        self._keys = keys
        self._clock = clock
        self._specs = {spec.code: spec for spec in (specs if specs is not None else banks())}
        self._open: dict[str, Bank] = {}
        self._lock = threading.Lock()

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(self._specs)

    def bank(self, code: str) -> Bank:
        """The bank with `code`, opened on first use; `BankUnknown` if there is none."""
        spec = self._specs.get(code)
        if spec is None:
            raise BankUnknown(f"no bank {code!r}")
        with self._lock:
            bank = self._open.get(code)
            if bank is None:
                bank = Bank.open(spec, self._base_url, self._keyring, self._keys, self._clock)
                self._open[code] = bank
            return bank

    def bank_for_pan(self, pan: str) -> Bank | None:
        """The bank whose IIN ranges hold the PAN, if any."""
        iin = pan[:6]
        spec = next((s for s in self._specs.values() if s.issues_iin(iin)), None)
        return None if spec is None else self.bank(spec.code)

    def authorize(self, request: AuthorizationRequest) -> AuthorizationAnswer:
        """Route to the issuer by IIN; a PAN no bank issues answers 14."""
        bank = self.bank_for_pan(request.pan) if is_pan(request.pan) else None
        if bank is None:
            return AuthorizationAnswer(ResponseCode.INVALID_CARD, reason="issuer_unknown")
        return bank.authorize(request)

    def close(self) -> None:
        with self._lock:
            for bank in self._open.values():
                bank.close()
            self._open.clear()


class PartnerBankGateway:
    """The wallet's `BankGateway` on the banks' own books."""

    def __init__(self, banks: Banks) -> None:
        self._banks = banks

    def _bank(self, bank_code: str) -> Bank | None:
        try:
            return self._banks.bank(bank_code)
        except BankUnknown:
            return None

    def link(self, bank_code: str, account_number: str, holder_name: str) -> LinkAnswer:
        bank = self._bank(bank_code)
        if bank is None:
            return LinkAnswer(False, reason="bank_unknown")
        return bank.link(account_number, holder_name)

    def debit(self, bank_code: str, agreement: str, amount_fen: int, reference: str) -> BankAnswer:
        bank = self._bank(bank_code)
        if bank is None:
            return BankAnswer(False, "bank_unknown")
        return bank.debit(agreement, amount_fen, reference)

    def credit(self, bank_code: str, agreement: str, amount_fen: int, reference: str) -> BankAnswer:
        bank = self._bank(bank_code)
        if bank is None:
            return BankAnswer(False, "bank_unknown")
        return bank.credit(agreement, amount_fen, reference)
