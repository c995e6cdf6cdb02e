"""The wallet's `BankGateway` on the banks' books: link, debit (top-up), credit
(withdrawal), each with the bank's own checks and idempotent by reference."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from milletpay.banks import AccountStatus, PartnerBankGateway
from milletpay.banks.chart import BankAccountCode
from milletpay.core.keyring import KeyRing
from milletpay.identity import Channel as KycChannel
from milletpay.identity import IdentityService, SimulatedSms
from milletpay.ledger import Ledger
from milletpay.store import create_engine, upgrade
from milletpay.wallet import WalletService

from .conftest import BankWorld, Holder, national_id, yuan


@pytest.fixture
def gateway(world: BankWorld) -> PartnerBankGateway:
    return PartnerBankGateway(world.banks)


def linked(gateway: PartnerBankGateway, holder: Holder) -> str:
    answer = gateway.link(holder.bank.code, holder.account.number, holder.name)
    assert answer.approved, answer
    return answer.agreement


def test_link_by_account_number_or_card_number_answers_one_agreement(
    world: BankWorld, gateway: PartnerBankGateway
) -> None:
    holder = world.holder()
    by_account = linked(gateway, holder)
    by_card = gateway.link(holder.bank.code, holder.card.pan, holder.name)
    assert by_card.approved and by_card.agreement == by_account
    assert holder.account.number not in by_account


@pytest.mark.parametrize(
    ("bank_code", "number", "name", "reason"),
    [
        ("ICBC", None, "Someone Else", "holder_name_mismatch"),
        ("ICBC", "6222020000000000000", None, "account_unknown"),
        ("CCB", None, None, "account_unknown"),  # the number is another bank's
        ("NOPE", None, None, "bank_unknown"),
    ],
)
def test_link_declines(
    world: BankWorld,
    gateway: PartnerBankGateway,
    bank_code: str,
    number: str | None,
    name: str | None,
    reason: str,
) -> None:
    holder = world.holder()
    answer = gateway.link(bank_code, number or holder.account.number, name or holder.name)
    assert (answer.approved, answer.reason) == (False, reason)


def test_link_declines_a_closed_account(world: BankWorld, gateway: PartnerBankGateway) -> None:
    holder = world.holder()
    holder.bank.set_account_status(holder.account_id, AccountStatus.CLOSED)
    answer = gateway.link("ICBC", holder.account.number, holder.name)
    assert (answer.approved, answer.reason) == (False, "account_closed")


def test_debit_and_credit_move_money_in_the_banks_books(
    world: BankWorld, gateway: PartnerBankGateway
) -> None:
    holder = world.holder(deposit_fen=yuan(1_000))
    agreement = linked(gateway, holder)
    assert gateway.debit("ICBC", agreement, yuan(300), "top-up-1").approved
    assert gateway.credit("ICBC", agreement, yuan(50), "withdraw-1").approved
    assert holder.bank.balance(holder.account_id).posted_fen == yuan(750)
    settlement_id = holder.bank.own_account_id(BankAccountCode.MILLET_SETTLEMENT)
    (settlement,) = holder.bank.ledger.lookup_accounts([settlement_id])
    assert settlement.credits_posted - settlement.debits_posted == yuan(250)
    assert holder.bank.verify().ok


def test_a_repeated_reference_gets_the_first_answer_and_moves_money_once(
    world: BankWorld, gateway: PartnerBankGateway
) -> None:
    holder = world.holder(deposit_fen=yuan(1_000))
    agreement = linked(gateway, holder)
    for _ in range(3):
        assert gateway.debit("ICBC", agreement, yuan(300), "top-up-1").approved
    assert holder.bank.balance(holder.account_id).posted_fen == yuan(700)
    # A declined reference stays declined, even once the money is there.
    assert not gateway.debit("ICBC", agreement, yuan(800), "top-up-2").approved
    holder.bank.deposit(holder.account_id, yuan(500), "salary")
    assert gateway.debit("ICBC", agreement, yuan(800), "top-up-2").reason == "insufficient_funds"


def test_a_reference_used_again_for_another_movement_is_refused_and_moves_nothing(
    world: BankWorld, gateway: PartnerBankGateway
) -> None:
    holder, other = world.holder(deposit_fen=yuan(1_000)), world.holder()
    agreement, other_agreement = linked(gateway, holder), linked(gateway, other)
    assert gateway.debit("ICBC", agreement, yuan(300), "ref-1").approved
    for kind, account, amount in (
        ("debit", agreement, yuan(301)),  # another amount
        ("credit", agreement, yuan(300)),  # another direction
        ("debit", other_agreement, yuan(300)),  # another account
    ):
        answer = getattr(gateway, kind)("ICBC", account, amount, "ref-1")
        assert (answer.approved, answer.reason) == (False, "reference_reused"), kind
    assert holder.bank.balance(holder.account_id).posted_fen == yuan(700)
    assert other.bank.balance(other.account_id).posted_fen == yuan(10_000)
    assert gateway.debit("ICBC", agreement, yuan(300), "ref-1").approved  # the first, again
    assert holder.bank.verify().ok


@pytest.mark.parametrize(
    ("status", "reason"),
    [(AccountStatus.FROZEN, "account_frozen"), (AccountStatus.CLOSED, "account_closed")],
)
def test_movements_decline_on_an_account_not_active(
    world: BankWorld, gateway: PartnerBankGateway, status: AccountStatus, reason: str
) -> None:
    holder = world.holder()
    agreement = linked(gateway, holder)
    holder.bank.set_account_status(holder.account_id, status)
    for move in (gateway.debit, gateway.credit):
        answer = move("ICBC", agreement, 100, f"{move.__name__}-1")
        assert (answer.approved, answer.reason) == (False, reason)


def test_movements_decline_without_funds_or_agreement(
    world: BankWorld, gateway: PartnerBankGateway
) -> None:
    holder = world.holder(deposit_fen=yuan(10))
    agreement = linked(gateway, holder)
    assert gateway.debit("ICBC", agreement, yuan(10) + 1, "r1").reason == "insufficient_funds"
    assert gateway.debit("ICBC", "0" * 24, 100, "r2").reason == "agreement_unknown"
    assert gateway.debit("CCB", agreement, 100, "r3").reason == "agreement_unknown"
    assert gateway.debit("NOPE", agreement, 100, "r4").reason == "bank_unknown"
    assert holder.bank.balance(holder.account_id).posted_fen == yuan(10)


def test_a_credit_card_account_is_not_debited_for_a_top_up(
    world: BankWorld, gateway: PartnerBankGateway
) -> None:
    holder = world.holder(product="credit")
    agreement = linked(gateway, holder)
    assert gateway.debit("ICBC", agreement, 100, "r1").reason == "credit_account_not_debitable"


def test_an_offline_bank_is_unavailable_and_the_retry_goes_through(
    world: BankWorld, gateway: PartnerBankGateway
) -> None:
    holder = world.holder()
    agreement = linked(gateway, holder)
    holder.bank.set_online(False)
    assert gateway.debit("ICBC", agreement, 100, "r1").reason == "bank_unavailable"
    assert not gateway.link("ICBC", holder.account.number, holder.name).approved
    holder.bank.set_online(True)
    assert gateway.debit("ICBC", agreement, 100, "r1").approved


@pytest.fixture
def wallet_on_banks(
    database_url: str, world: BankWorld, gateway: PartnerBankGateway
) -> Iterator[tuple[WalletService, IdentityService]]:
    engine = create_engine(database_url)
    upgrade(engine)
    ledger = Ledger(engine, world.clock)
    identity = IdentityService(engine, KeyRing.generate(), world.clock, SimulatedSms())
    yield WalletService(ledger, identity, engine, world.clock, gateway), identity
    engine.dispose()


def test_the_wallet_tops_up_and_withdraws_through_the_partner_banks(
    world: BankWorld, wallet_on_banks: tuple[WalletService, IdentityService]
) -> None:
    wallet, identity = wallet_on_banks
    holder = world.holder("BOC", deposit_fen=yuan(1_000))
    user = identity.register("13800138000", holder.name, national_id(1))
    for channel in (KycChannel.BANK_CARD, KycChannel.PUBLIC_SECURITY_ID, KycChannel.TELECOM):
        identity.verify_channel(user.id, channel)
    link = wallet.link_bank_account(user.id, "BOC", holder.account.number)
    assert link.account_masked != holder.account.number
    assert wallet.top_up(user.id, link.id, yuan(400), "key-1").approved
    assert wallet.top_up(user.id, link.id, yuan(400), "key-1").approved  # a retry
    assert wallet.withdraw(user.id, link.id, yuan(100), "key-2").approved
    declined = wallet.top_up(user.id, link.id, yuan(1_000), "key-3")
    assert (declined.decline_code, declined.reason) == ("bank_declined", "insufficient_funds")
    assert wallet.balance(user.id).posted_fen == yuan(300)
    assert holder.bank.balance(holder.account_id).posted_fen == yuan(700)
    assert holder.bank.verify().ok
