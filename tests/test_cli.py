"""The `millet` command refuses nonsense options with a clear message before doing work."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from milletpay.cli import app


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["bench", "ledger", "--transfers", "0"], "--transfers"),
        (["bench", "ledger", "--accounts", "1"], "--accounts"),
        (["bench", "ledger", "--clients", "0"], "--clients"),
        (["bench", "wallet", "--clients", "0"], "--clients"),
        (["bench", "wallet", "--users", "1"], "--users"),
        (["bench", "wallet", "--duration", "0"], "--duration"),
    ],
)
def test_bench_options_out_of_range_are_refused(args: list[str], option: str) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert option in result.output


def test_verify_refuses_a_missing_sqlite_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = CliRunner().invoke(
        app, ["ledger", "verify", "--database-url", f"sqlite:///{tmp_path / 'none.db'}"]
    )
    assert result.exit_code == 2
    assert "no ledger database" in result.output
    assert not (tmp_path / "none.db").exists()


@pytest.mark.parametrize("value", ["localhost", ":9000", "switch:port", "switch:70000"])
def test_serve_refuses_a_card_network_that_is_no_host_and_port(value: str) -> None:
    result = CliRunner().invoke(app, ["serve", "--card-network", value])
    assert result.exit_code == 2
    assert "--card-network" in result.output
