"""`millet demo` plays a day that balances, on SQLite and PostgreSQL, as often as it is run.

Also the two commands a newcomer types after it: `millet demo` and `millet ledger verify`
through the CLI, and `ledger verify` catching a balance changed behind the ledger's back.
"""

from __future__ import annotations

import io
from pathlib import Path

import sqlalchemy as sa
from rich.console import Console
from typer.testing import CliRunner

from milletpay.cli import app
from milletpay.ledger import Account, AccountFlags, Ledger
from milletpay.ledger.storage import encode_id
from milletpay.sim.demo import (
    ACCOUNTS,
    ISSUER,
    LI_WEI,
    MERCHANT,
    SCENES,
    WANG_FANG,
    ZHANG_MIN,
    ZHANG_MIN_COINS,
    Side,
    run_demo,
)

runner = CliRunner()

# What one day leaves in the books, by the scenes' own arithmetic (fen; coins for coins).
ONE_DAY = {
    LI_WEI.id: 800_00 - 88_00 - 36_00 - 20_00 - 15_00,  # the expired hold gave its 30.00 back
    WANG_FANG.id: 500_00 + 88_00 - 45_00 - 152_30 + 20_00,
    ZHANG_MIN.id: 120_00 - 60_00 + 15_00,  # the voided hold and the decline moved nothing
    MERCHANT.id: 45_00 - 27 + 36_00 + 152_30,
    ZHANG_MIN_COINS.id: 60,
    ISSUER.id: 60,
}


def play(url: str) -> tuple[bool, str]:
    console = Console(file=io.StringIO(), width=100)
    ok = run_demo(url, console)
    output = console.file.getvalue()
    assert isinstance(output, str)
    return ok, output


def balances(url: str) -> dict[int, int]:
    """The demo accounts' balances, on the side each grows on."""
    with Ledger.open(url) as ledger:
        found = ledger.lookup_accounts([a.id for a in ACCOUNTS])
    kinds = {a.id: a.kind for a in ACCOUNTS}
    return {
        a.id: a.balance_debit_minus_credit
        if kinds[a.id].side is Side.DEBIT
        else a.balance_credit_minus_debit
        for a in found
    }


def transfer_count(url: str) -> int:
    with Ledger.open(url) as ledger:
        return ledger.verify().transfers


def test_demo_balances_the_books_and_a_second_run_plays_a_new_day(database_url: str) -> None:
    ok, output = play(database_url)
    assert ok, output
    assert "ledger verify: ok" in output
    assert "✗" not in output
    after_one = balances(database_url)
    for account_id, amount in ONE_DAY.items():
        assert after_one[account_id] == amount, account_id
    transfers_one_day = transfer_count(database_url)

    ok, output = play(database_url)
    assert ok, output
    assert "exists ×11" in output, "the accounts are opened once"
    assert "ledger verify: ok" in output
    assert balances(database_url) == {i: 2 * amount for i, amount in after_one.items()}
    assert transfer_count(database_url) == 2 * transfers_one_day


def test_demo_shows_every_scene_with_the_ledgers_answers(tmp_path: Path) -> None:
    ok, output = play(f"sqlite:///{tmp_path / 'millet.db'}")
    assert ok, output
    assert output.count("✓") == len(SCENES)
    for answer in ("exceeds_credits, linked_event_failed", "ok ×2, exists ×2", "expired"):
        assert answer in output
    assert "ledger 156 · CNY" in output and "ledger 900001 · XCN" in output
    assert "641.00 CNY" in output, "Li Wei's wallet at the end of the day"


def test_demo_fails_when_its_account_ids_are_taken_by_other_accounts(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'millet.db'}"
    with Ledger.open(url) as ledger:
        assert ledger.create_accounts([Account(LI_WEI.id, 156, 1, AccountFlags.HISTORY)]) == ["ok"]
    ok, output = play(url)
    assert not ok
    assert "exists_with_different_flags" in output
    assert f"1 of {len(SCENES)} scenes went wrong" in output


def test_cli_demo_then_ledger_verify(database_url: str) -> None:
    demo = runner.invoke(app, ["demo", "--database-url", database_url])
    assert demo.exit_code == 0, demo.output
    assert "ledger verify: ok" in demo.output

    verify = runner.invoke(app, ["ledger", "verify", "--database-url", database_url])
    assert verify.exit_code == 0, verify.output
    assert "ledger verify: ok" in verify.output


def test_ledger_verify_names_an_account_whose_balance_was_changed_behind_its_back(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'millet.db'}"
    ok, output = play(url)
    assert ok, output
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        changed = conn.execute(
            sa.text("UPDATE accounts SET credits_posted = credits_posted + 1 WHERE id = :id"),
            {"id": encode_id(WANG_FANG.id)},
        )
        assert changed.rowcount == 1
    engine.dispose()

    verify = runner.invoke(app, ["ledger", "verify", "--database-url", url])
    assert verify.exit_code == 1, verify.output
    assert f"account {WANG_FANG.id}: credits_posted" in verify.output
    assert "ledger 156: posted debits" in verify.output
