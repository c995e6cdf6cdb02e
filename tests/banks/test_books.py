"""Each bank keeps its own books, in its own database (SQLite) or schema (PostgreSQL),
with PANs and account numbers sealed."""

from __future__ import annotations

import sqlalchemy as sa

from milletpay.banks import bank_database
from milletpay.banks.chart import BankAccountCode
from milletpay.banks.storage import BANK_VERSION_TABLE
from milletpay.store.engine import sqlite_path

from .conftest import BankWorld, pin_request, yuan


def test_a_bank_database_is_derived_from_the_platforms() -> None:
    sqlite = bank_database("sqlite:////data/millet.db", "ICBC")
    assert (sqlite.url, sqlite.schema) == ("sqlite:////data/millet-bank-icbc.db", None)
    pg = bank_database("postgresql+psycopg://u@h/millet", "BOCOM")
    assert (pg.url, pg.schema) == ("postgresql+psycopg://u@h/millet", "bank_bocom")


def test_two_banks_keep_independent_books(world: BankWorld) -> None:
    icbc = world.holder("ICBC", deposit_fen=yuan(500))
    ccb = world.holder("CCB", deposit_fen=yuan(700))
    assert icbc.bank.authorize(pin_request(icbc, yuan(100), "rrn-1")).approved
    assert icbc.bank.complete("rrn-1", yuan(100)).ok
    # Each ledger holds only its own bank's accounts and transfers.
    assert icbc.bank.ledger.lookup_accounts([ccb.account_id]) == []
    assert ccb.bank.ledger.lookup_accounts([icbc.account_id]) == []
    network = BankAccountCode.NETWORK_SETTLEMENT
    (icbc_network,) = icbc.bank.ledger.lookup_accounts([icbc.bank.own_account_id(network)])
    (ccb_network,) = ccb.bank.ledger.lookup_accounts([ccb.bank.own_account_id(network)])
    assert (icbc_network.credits_posted, ccb_network.credits_posted) == (yuan(100), 0)
    icbc_report, ccb_report = icbc.bank.verify(), ccb.bank.verify()
    assert icbc_report.ok and ccb_report.ok
    assert icbc_report.transfers == ccb_report.transfers + 2  # the hold and its post
    # Different databases (SQLite files) or schemas (PostgreSQL).
    icbc_where, ccb_where = (bank_database(world.base_url, c) for c in ("ICBC", "CCB"))
    assert icbc_where != ccb_where


def test_a_bank_database_holds_only_the_ledger_and_the_banks_tables(world: BankWorld) -> None:
    bank = world.banks.bank("ABC")
    tables = set(sa.inspect(bank.engine).get_table_names())
    assert {"accounts", "transfers", "pending_transfers", "ledger_meta"} <= tables
    assert {"customers", "bank_accounts", "cards", "authorizations", "movements"} <= tables
    assert {"users", "wallets", "api_idempotency_keys"}.isdisjoint(tables)
    with bank.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == "0001"
        assert conn.exec_driver_sql(f"SELECT version_num FROM {BANK_VERSION_TABLE}").scalar() == (
            "b0002"
        )


def test_reopening_a_bank_finds_its_books(world: BankWorld) -> None:
    holder = world.holder("CIB", deposit_fen=yuan(50))
    world.banks.close()
    again = world.banks.bank("CIB")
    assert again is not holder.bank
    assert again.balance(holder.account_id).posted_fen == yuan(50)
    assert again.authorize(pin_request(holder, yuan(50), "rrn-1")).approved


def test_no_pan_or_account_number_is_stored_in_clear(world: BankWorld) -> None:
    holders = [world.holder("ICBC") for _ in range(3)]
    for i, holder in enumerate(holders):
        holder.bank.authorize(pin_request(holder, 100, f"rrn-{i}"))
    bank = holders[0].bank
    secrets = [h.card.pan for h in holders] + [h.account.number for h in holders]
    path = sqlite_path(str(bank.engine.url))
    if path is not None:
        bank.close()  # checkpoint the WAL into the file
        blob = path.read_bytes()
        for wal in path.parent.glob(path.name + "-*"):
            blob += wal.read_bytes()
        for secret in secrets:
            assert secret.encode() not in blob
            assert secret[6:-4].encode() not in blob  # not even the middle digits
        return
    with bank.engine.connect() as conn:
        for table in ("cards", "bank_accounts", "authorizations", "customers"):
            for row in conn.exec_driver_sql(f"SELECT * FROM {table}"):
                text = repr(tuple(row))
                assert not any(secret in text for secret in secrets)
    assert all(h.card.pan not in repr(h.card) for h in holders)
