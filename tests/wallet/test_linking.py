"""Linking a bank account: partner banks only, in the user's real name, never in clear."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from milletpay.ledger import AccountFlags
from milletpay.wallet import (
    LEDGER_CNY,
    AccountCode,
    BankAccountLinkDeclined,
    BankAccountNumberInvalid,
    BankUnknown,
    wallet_account_id,
)

from .conftest import BANK, World


def test_a_linked_account_is_stored_masked_never_in_clear(world: World) -> None:
    alice = world.person(2)

    with world.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT * FROM linked_bank_accounts")).all()

    assert len(rows) == 1
    assert alice.account_number not in repr(rows[0])
    assert rows[0].account_masked == alice.account_number[:4] + "*" * 8 + alice.account_number[-4:]
    assert world.ledger.verify().ok


def test_the_wallet_is_a_liability_account_on_ledger_156_with_a_derived_id(world: World) -> None:
    alice = world.person(1)

    (account,) = world.ledger.lookup_accounts([wallet_account_id(alice.user_id)])

    assert (account.ledger, account.code, account.user_data_128) == (
        LEDGER_CNY,
        AccountCode.WALLET,
        alice.user_id,
    )
    assert LEDGER_CNY == 156
    assert account.flags & AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
    assert world.wallet.open_wallet(alice.user_id) == account.id
    assert world.ledger.verify().ok


def test_linking_refuses_unknown_banks_bad_numbers_and_other_peoples_accounts(
    world: World,
) -> None:
    alice, bob = world.person(2), world.person(2)

    with pytest.raises(BankUnknown):
        world.wallet.link_bank_account(alice.user_id, "NOPE", "6222020012345678")
    with pytest.raises(BankAccountNumberInvalid):
        world.wallet.link_bank_account(alice.user_id, BANK, "6222-0200")
    with pytest.raises(BankAccountLinkDeclined) as declined:
        world.wallet.link_bank_account(alice.user_id, BANK, bob.account_number)

    assert "holder_name_mismatch" in str(declined.value)
    assert bob.account_number not in str(declined.value)
    assert world.ledger.verify().ok
