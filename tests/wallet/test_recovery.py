"""Operations a crash or a silent bank left pending are finished by `resume_pending`,
exactly once: the bank paid or was paid once, the ledger moved once."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import sqlalchemy as sa

from milletpay.core.ids import id_from_bytes, id_to_bytes
from milletpay.ledger import PendingStatus
from milletpay.risk import OperationKind
from milletpay.wallet import OperationStatus, SimulatedBankGateway, WalletService
from milletpay.wallet.accounts import transfer_id
from milletpay.wallet.bank import BankAnswer, LinkAnswer
from milletpay.wallet.tables import wallet_operations as ops

from .conftest import BANK, World, yuan


@dataclass
class LostAnswers:
    """The simulated bank, but the answer to the next `lose` calls never arrives: the
    bank did the work, the wallet hears a connection error (as after a crash)."""

    bank: SimulatedBankGateway
    lose: int = 0
    calls: list[str] = field(default_factory=list)

    def link(self, bank_code: str, account_number: str, holder_name: str) -> LinkAnswer:
        return self.bank.link(bank_code, account_number, holder_name)

    def debit(self, bank_code: str, agreement: str, amount_fen: int, reference: str) -> BankAnswer:
        return self._answer(self.bank.debit(bank_code, agreement, amount_fen, reference))

    def credit(self, bank_code: str, agreement: str, amount_fen: int, reference: str) -> BankAnswer:
        return self._answer(self.bank.credit(bank_code, agreement, amount_fen, reference))

    def _answer(self, answer: BankAnswer) -> BankAnswer:
        self.calls.append("answered" if self.lose == 0 else "lost")
        if self.lose:
            self.lose -= 1
            raise ConnectionError("the bank's answer was lost")
        return answer


def _wallet(world: World, bank: LostAnswers) -> WalletService:
    return WalletService(world.ledger, world.identity, world.engine, world.clock, bank)


def _status(world: World, user_id: int, key: str) -> OperationStatus:
    history = world.wallet.history(user_id, limit=100)
    (item,) = [i for i in history.items if i.operation_id == _operation_id(world, user_id, key)]
    return item.status


def _operation_id(world: World, user_id: int, key: str) -> int:
    with world.engine.connect() as conn:
        row = conn.execute(
            sa.select(ops.c.id).where(
                ops.c.user_id == id_to_bytes(user_id), ops.c.idempotency_key == key
            )
        ).one()
    return id_from_bytes(row.id)


def test_a_top_up_whose_bank_answer_was_lost_is_finished_once(world: World) -> None:
    alice = world.person(1, bank_balance_fen=yuan(1_000))
    bank = LostAnswers(world.bank, lose=1)
    wallet = _wallet(world, bank)
    with pytest.raises(ConnectionError):
        wallet.top_up(alice.user_id, alice.linked_account_id, yuan(300), "top-up-1")
    # The bank took the money; the wallet has not credited it yet.
    assert world.bank.balance_fen(BANK, alice.account_number) == yuan(700)
    assert wallet.balance(alice.user_id).posted_fen == 0
    assert _status(world, alice.user_id, "top-up-1") is OperationStatus.PENDING

    assert wallet.resume_pending().finished == 0  # not stuck long enough yet
    world.clock.advance(seconds=61)
    resumed = wallet.resume_pending()
    assert (resumed.finished, resumed.failed) == (1, 0)
    assert wallet.balance(alice.user_id).posted_fen == yuan(300)
    assert world.bank.balance_fen(BANK, alice.account_number) == yuan(700)
    assert _status(world, alice.user_id, "top-up-1") is OperationStatus.COMPLETED
    assert wallet.resume_pending().finished == 0  # nothing left
    assert world.ledger.verify().ok


def test_a_withdrawal_whose_bank_answer_was_lost_keeps_its_hold_then_posts_it(
    world: World,
) -> None:
    alice = world.person(1)
    assert world.wallet.top_up(alice.user_id, alice.linked_account_id, yuan(500), "t").approved
    bank_before = world.bank.balance_fen(BANK, alice.account_number)
    bank = LostAnswers(world.bank, lose=2)
    wallet = _wallet(world, bank)
    with pytest.raises(ConnectionError):
        wallet.withdraw(alice.user_id, alice.linked_account_id, yuan(200), "w-1")
    # Paid out by the bank; held, not yet posted, in the wallet: not available, not lost.
    balance = wallet.balance(alice.user_id)
    assert (balance.posted_fen, balance.available_fen) == (yuan(500), yuan(300))
    assert world.bank.balance_fen(BANK, alice.account_number) == bank_before + yuan(200)
    hold = transfer_id(alice.user_id, OperationKind.WITHDRAW, "w-1", 0)
    assert world.ledger.pending_status(hold) is PendingStatus.PENDING

    world.clock.advance(seconds=3600)  # a hold has no timeout: still held an hour on
    assert world.ledger.pending_status(hold) is PendingStatus.PENDING
    resumed = wallet.resume_pending()  # the second answer is lost too: still stuck
    assert (resumed.finished, resumed.failed) == (0, 1)
    resumed = wallet.resume_pending()
    assert (resumed.finished, resumed.failed) == (1, 0)
    balance = wallet.balance(alice.user_id)
    assert (balance.posted_fen, balance.available_fen) == (yuan(300), yuan(300))
    assert world.bank.balance_fen(BANK, alice.account_number) == bank_before + yuan(200)
    assert world.ledger.pending_status(hold) is PendingStatus.POSTED
    assert bank.calls == ["lost", "lost", "answered"]
    assert world.ledger.verify().ok


def test_a_retry_by_the_user_and_the_resumer_finish_it_once(world: World) -> None:
    alice = world.person(1, bank_balance_fen=yuan(1_000))
    wallet = _wallet(world, LostAnswers(world.bank, lose=1))
    with pytest.raises(ConnectionError):
        wallet.top_up(alice.user_id, alice.linked_account_id, yuan(100), "k")
    again = wallet.top_up(alice.user_id, alice.linked_account_id, yuan(100), "k")
    assert again.approved
    world.clock.advance(seconds=61)
    assert wallet.resume_pending().finished == 0  # the retry finished it
    assert wallet.balance(alice.user_id).posted_fen == yuan(100)
    assert world.bank.balance_fen(BANK, alice.account_number) == yuan(900)
    assert world.ledger.verify().ok
