"""The private online bank: Class II accounts opened in-app, with their limits on
spending and transfers (10,000 CNY a day, 200,000 CNY a year), exact at the edge."""

from __future__ import annotations

import pytest

from milletpay.banks import (
    AUTH_HOLD_TIMEOUT_S,
    AuthorizationRequest,
    BankInputError,
    Channel,
    PartnerBankGateway,
    RemoteOpeningNotOffered,
    ResponseCode,
)
from milletpay.banks.data import bank_spec

from .conftest import BankWorld, national_id, yuan

DAILY_FEN = yuan(10_000)
YEARLY_FEN = yuan(200_000)


def test_the_data_gives_the_online_bank_the_pboc_class_ii_limits() -> None:
    remote = bank_spec("PRB").remote_opening
    assert remote is not None
    assert (remote.daily_limit_fen, remote.yearly_limit_fen) == (DAILY_FEN, YEARLY_FEN)


def test_a_class_ii_account_is_opened_remotely_once_per_id_number(world: BankWorld) -> None:
    bank = world.banks.bank("PRB")
    opened = bank.open_remote_account("Li Lei", national_id(1))
    assert opened.account.account_class == 2 and opened.account.product == "debit"
    assert bank.open_remote_account("Li Lei", national_id(1)) == opened
    assert bank.open_remote_account("Han Meimei", national_id(2)) != opened
    assert bank.verify().ok


def test_remote_opening_refuses_a_bad_id_number_and_banks_that_do_not_offer_it(
    world: BankWorld,
) -> None:
    with pytest.raises(BankInputError, match="resident ID number is not valid"):
        wrong = national_id(1)[:-1] + ("1" if national_id(1)[-1] != "1" else "2")
        world.banks.bank("PRB").open_remote_account("Li Lei", wrong)
    with pytest.raises(RemoteOpeningNotOffered):
        world.banks.bank("ICBC").open_remote_account("Li Lei", national_id(1))


def _funded_class_ii(world: BankWorld, n: int = 1) -> tuple[str, int, str]:
    """A funded Class II account linked to Millet Pay: (agreement, account id, number)."""
    bank = world.banks.bank("PRB")
    opened = bank.open_remote_account(f"Person {n}", national_id(n))
    assert bank.deposit(opened.account.id, yuan(500_000), f"fund-{n}")
    link = PartnerBankGateway(world.banks).link("PRB", opened.number, f"Person {n}")
    assert link.approved
    return link.agreement, opened.account.id, opened.number


def test_exactly_the_daily_limit_passes_and_one_fen_more_declines(world: BankWorld) -> None:
    gateway = PartnerBankGateway(world.banks)
    agreement, _, _ = _funded_class_ii(world)
    assert gateway.debit("PRB", agreement, DAILY_FEN - 1, "a").approved
    assert gateway.debit("PRB", agreement, 1, "b").approved  # exactly the limit
    answer = gateway.debit("PRB", agreement, 1, "c")
    assert (answer.approved, answer.reason) == (False, "account_class_daily_limit")
    # Money coming in is not limited; the next China day has room again.
    assert gateway.credit("PRB", agreement, yuan(1), "d").approved
    world.clock.advance(seconds=86_400)
    assert gateway.debit("PRB", agreement, DAILY_FEN, "e").approved


def test_exactly_the_yearly_limit_passes_and_one_fen_more_declines(world: BankWorld) -> None:
    gateway = PartnerBankGateway(world.banks)
    agreement, _, _ = _funded_class_ii(world)
    days = YEARLY_FEN // DAILY_FEN
    start = world.clock.now_ns()
    for day in range(days):
        assert gateway.debit("PRB", agreement, DAILY_FEN, f"day-{day}").approved, day
        world.clock.advance(seconds=86_400)
    # ManualClock starts on 2023-11-14: these 20 days stay within one calendar year.
    assert (world.clock.now_ns() - start) // 86_400_000_000_000 == days
    answer = gateway.debit("PRB", agreement, 1, "over")
    assert (answer.approved, answer.reason) == (False, "account_class_yearly_limit")


def test_card_spending_on_a_class_ii_account_counts_toward_the_same_limits(
    world: BankWorld,
) -> None:
    gateway = PartnerBankGateway(world.banks)
    agreement, account_id, _ = _funded_class_ii(world)
    bank = world.banks.bank("PRB")
    card = bank.issue_card(account_id, pin="271828")
    assert gateway.debit("PRB", agreement, DAILY_FEN - yuan(100), "top-up").approved

    def tap(amount_fen: int, reference: str) -> ResponseCode:
        request = AuthorizationRequest(reference, card.pan, amount_fen, Channel.CONTACTLESS)
        return bank.authorize(request).response_code

    assert tap(yuan(100), "rrn-1") is ResponseCode.APPROVED  # exactly the limit
    assert tap(1, "rrn-2") is ResponseCode.EXCEEDS_AMOUNT_LIMIT
    assert bank.verify().ok


def test_a_class_i_account_at_another_bank_has_no_class_ii_limit(world: BankWorld) -> None:
    gateway = PartnerBankGateway(world.banks)
    holder = world.holder("ICBC", deposit_fen=yuan(50_000))
    agreement = gateway.link("ICBC", holder.account.number, holder.name).agreement
    assert gateway.debit("ICBC", agreement, DAILY_FEN + 1, "big").approved


def test_a_lapsed_card_hold_no_longer_counts_toward_the_yearly_limit(world: BankWorld) -> None:
    gateway = PartnerBankGateway(world.banks)
    agreement, account_id, _ = _funded_class_ii(world)
    bank = world.banks.bank("PRB")
    card = bank.issue_card(account_id, pin="271828")
    days = YEARLY_FEN // DAILY_FEN
    for day in range(days - 1):
        assert gateway.debit("PRB", agreement, DAILY_FEN, f"day-{day}").approved, day
        world.clock.advance(seconds=86_400)
    request = AuthorizationRequest("rrn-1", card.pan, DAILY_FEN, Channel.CONTACTLESS)
    assert bank.authorize(request).approved  # the year's limit is now used up
    world.clock.advance(seconds=86_400)
    assert gateway.debit("PRB", agreement, 1, "full").reason == "account_class_yearly_limit"
    world.clock.advance(seconds=AUTH_HOLD_TIMEOUT_S)  # the hold lapses, never completed
    assert gateway.debit("PRB", agreement, DAILY_FEN, "after").approved
    assert bank.verify().ok
