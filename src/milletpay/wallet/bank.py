"""The narrow protocol the wallet uses to reach a cardholder's bank, and a simulated bank.

`BankGateway` is all the wallet knows of a bank: link an account (the bank answers with
an agreement number, so the wallet never keeps the account number), debit it for a
top-up, credit it for a withdrawal. Every movement carries the wallet's `reference`; a
bank answers a repeated reference with its first answer, so a retry never moves money
twice. A decline is an answer with a reason, not an exception.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class BankAnswer:
    approved: bool
    reason: str = ""  # why it was declined: "insufficient_funds", "account_closed", ...


@dataclass(frozen=True, slots=True)
class LinkAnswer:
    approved: bool
    agreement: str = ""  # the bank's handle for the linked account
    reason: str = ""


class BankGateway(Protocol):
    def link(self, bank_code: str, account_number: str, holder_name: str) -> LinkAnswer: ...

    def debit(self, bank_code: str, agreement: str, amount_fen: int, reference: str) -> BankAnswer:
        """Take `amount_fen` from the cardholder's account (a top-up)."""
        ...

    def credit(self, bank_code: str, agreement: str, amount_fen: int, reference: str) -> BankAnswer:
        """Pay `amount_fen` into the cardholder's account (a withdrawal)."""
        ...


@dataclass
class _SimAccount:
    holder_name: str
    balance_fen: int
    closed: bool = False


class SimulatedBankGateway:
    """Banks held in memory: accounts opened by hand, balances in fen; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._accounts: dict[tuple[str, str], _SimAccount] = {}
        self._agreements: dict[str, tuple[str, str]] = {}
        self._answers: dict[str, BankAnswer] = {}  # by reference

    # -- the simulation's own controls ----------------------------------------------

    def open_account(
        self, bank_code: str, account_number: str, holder_name: str, balance_fen: int = 0
    ) -> None:
        assert balance_fen >= 0
        with self._lock:
            self._accounts[(bank_code, account_number)] = _SimAccount(holder_name, balance_fen)

    def close_account(self, bank_code: str, account_number: str) -> None:
        with self._lock:
            self._accounts[(bank_code, account_number)].closed = True

    def balance_fen(self, bank_code: str, account_number: str) -> int:
        with self._lock:
            return self._accounts[(bank_code, account_number)].balance_fen

    # -- BankGateway ----------------------------------------------------------------

    def link(self, bank_code: str, account_number: str, holder_name: str) -> LinkAnswer:
        with self._lock:
            account = self._accounts.get((bank_code, account_number))
            if account is None or account.closed:
                return LinkAnswer(False, reason="account_unknown")
            if account.holder_name != holder_name:
                return LinkAnswer(False, reason="holder_name_mismatch")
            agreement = hashlib.sha256(f"{bank_code}|{account_number}".encode()).hexdigest()[:24]
            self._agreements[agreement] = (bank_code, account_number)
            return LinkAnswer(True, agreement=agreement)

    def debit(self, bank_code: str, agreement: str, amount_fen: int, reference: str) -> BankAnswer:
        return self._move(bank_code, agreement, -amount_fen, reference)

    def credit(self, bank_code: str, agreement: str, amount_fen: int, reference: str) -> BankAnswer:
        return self._move(bank_code, agreement, amount_fen, reference)

    def _move(self, bank_code: str, agreement: str, delta_fen: int, reference: str) -> BankAnswer:
        assert delta_fen != 0
        with self._lock:
            if reference in self._answers:
                return self._answers[reference]
            answer = self._apply(bank_code, agreement, delta_fen)
            self._answers[reference] = answer
            return answer

    def _apply(self, bank_code: str, agreement: str, delta_fen: int) -> BankAnswer:
        key = self._agreements.get(agreement)
        if key is None or key[0] != bank_code:
            return BankAnswer(False, "agreement_unknown")
        account = self._accounts[key]
        if account.closed:
            return BankAnswer(False, "account_closed")
        if account.balance_fen + delta_fen < 0:
            return BankAnswer(False, "insufficient_funds")
        account.balance_fen += delta_fen
        return BankAnswer(True)
