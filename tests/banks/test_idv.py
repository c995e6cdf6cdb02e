"""The issuer's ID&V decision on a token request, on both engines: green, yellow, red."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from milletpay.banks import (
    AccountStatus,
    BankInputError,
    CardStatus,
    IdvDecision,
    IdvOutcome,
    IdvReason,
)
from milletpay.banks.tables import customers

from .conftest import BankWorld, Holder

PHONE = "+8613800138000"
OTHER_PHONE = "+8613900139000"


def _idv(holder: Holder, phone: str = PHONE, **kw: str) -> IdvDecision:
    fields = {"expiry_yymm": holder.card.expiry_yymm, "cvn2": holder.card.cvn2}
    fields.update(kw)
    return holder.bank.idv(holder.card.pan, fields["expiry_yymm"], fields["cvn2"], phone)


def _red(reason: IdvReason) -> IdvDecision:
    return IdvDecision(IdvOutcome.RED, reason)


def test_the_cardholder_on_the_phone_on_file_is_green(world: BankWorld) -> None:
    holder = world.holder(phone="138 0013 8000")
    assert _idv(holder) == IdvDecision(IdvOutcome.GREEN, IdvReason.VERIFIED)


def test_another_phone_steps_up_to_the_phone_on_file(world: BankWorld) -> None:
    decision = _idv(world.holder(phone=PHONE), OTHER_PHONE)
    assert decision.outcome is IdvOutcome.YELLOW
    assert decision.reason is IdvReason.PHONE_MISMATCH
    assert decision.phone_on_file == PHONE
    assert decision.phone_masked == "+86138****8000"
    assert PHONE not in repr(decision)


def test_no_phone_on_file_steps_up_without_a_number(world: BankWorld) -> None:
    decision = _idv(world.holder())
    assert decision == IdvDecision(IdvOutcome.YELLOW, IdvReason.NO_PHONE_ON_FILE)


def test_a_wrong_cvn2_is_red(world: BankWorld) -> None:
    holder = world.holder(phone=PHONE)
    wrong = f"{(int(holder.card.cvn2) + 1) % 1000:03d}"
    assert _idv(holder, cvn2=wrong) == _red(IdvReason.CVN2_MISMATCH)


def test_a_wrong_expiry_is_red(world: BankWorld) -> None:
    holder = world.holder(phone=PHONE)
    assert _idv(holder, expiry_yymm="9912") == _red(IdvReason.EXPIRY_MISMATCH)


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (CardStatus.BLOCKED, IdvReason.CARD_BLOCKED),
        (CardStatus.LOST, IdvReason.CARD_LOST),
        (CardStatus.EXPIRED, IdvReason.CARD_EXPIRED),
    ],
)
def test_a_card_that_is_not_active_is_red(
    world: BankWorld, status: CardStatus, reason: IdvReason
) -> None:
    holder = world.holder(phone=PHONE)
    holder.bank.set_card_status(holder.card.card_id, status)
    assert _idv(holder) == _red(reason)


def test_a_card_past_its_expiry_month_is_red(world: BankWorld) -> None:
    holder = world.holder(phone=PHONE)
    world.clock.advance(seconds=11 * 366 * 24 * 3600)  # past the product's 10 years
    assert _idv(holder) == _red(IdvReason.CARD_EXPIRED)


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (AccountStatus.FROZEN, IdvReason.ACCOUNT_FROZEN),
        (AccountStatus.CLOSED, IdvReason.ACCOUNT_CLOSED),
    ],
)
def test_an_account_that_is_not_active_is_red(
    world: BankWorld, status: AccountStatus, reason: IdvReason
) -> None:
    holder = world.holder(phone=PHONE)
    holder.bank.set_account_status(holder.account_id, status)
    assert _idv(holder) == _red(reason)


def test_an_unknown_card_is_red(world: BankWorld) -> None:
    holder = world.holder(phone=PHONE)
    other = world.holder("CCB", phone=PHONE)
    bank = holder.bank
    card = other.card
    assert bank.idv(card.pan, card.expiry_yymm, card.cvn2, PHONE) == _red(IdvReason.CARD_UNKNOWN)
    assert bank.idv("not a pan", "3001", "123", PHONE) == _red(IdvReason.CARD_UNKNOWN)


def test_an_offline_issuer_is_red(world: BankWorld) -> None:
    holder = world.holder(phone=PHONE)
    holder.bank.set_online(False)
    assert _idv(holder) == _red(IdvReason.ISSUER_UNAVAILABLE)


def test_the_phone_on_file_is_sealed(world: BankWorld) -> None:
    holder = world.holder(phone=PHONE)
    with holder.bank.engine.connect() as conn:
        sealed = conn.execute(sa.select(customers.c.phone_sealed)).scalar_one()
    assert PHONE.encode() not in sealed and b"13800138000" not in sealed


def test_a_phone_that_is_not_a_mobile_number_is_refused(world: BankWorld) -> None:
    with pytest.raises(BankInputError) as refused:
        world.banks.bank("ICBC").open_customer("Holder", phone="12345")
    assert refused.value.code == "bank_phone_invalid"
