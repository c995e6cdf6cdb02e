"""`millet bench tap` runs end to end on a small scale, its parties in processes of
their own (`sim.parties`), and reports its figures; every tap is approved and the banks'
books hold exactly what was paid."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from milletpay.cli import app
from milletpay.sim.parties import IssuerHostsProcess, PartyKeys


def test_the_tap_benchmark_pays_and_reports() -> None:
    args = ["bench", "tap", "--json", "--terminals", "2", "--taps", "24"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    assert (figures["taps"], figures["declined"]) == (24, 0)
    assert (figures["clearing_records"], figures["banks_ledger_verify_ok"]) == (24, True)
    assert figures["taps_per_s"] > 0
    assert figures["latency_ms_max"] >= figures["latency_ms_p99"] >= figures["latency_ms_p50"] > 0


def test_a_party_that_cannot_start_says_why(tmp_path: Path) -> None:
    keys = PartyKeys({1: bytes(32)}, "{}")  # no issuer keys: the banks cannot open
    url = f"sqlite:///{tmp_path / 'p.db'}"
    hosts = IssuerHostsProcess(url, keys, ["ICBC"])
    with pytest.raises(RuntimeError, match="issuers process did not start: IssuerKeyError"):
        hosts.__enter__()
