"""`millet bench checkout` runs end to end on a small scale and reports its figures: the
merchant's server creates intents, the wallets confirm them, the books verify."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from milletpay.cli import app


def test_the_checkout_benchmark_pays_and_reports() -> None:
    args = ["bench", "checkout", "--json", "--payments", "30", "--users", "4", "--clients", "2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    assert (figures["payments"], figures["errors"], figures["ledger_verify_ok"]) == (30, 0, True)
    assert figures["intents_per_s"] > 0
    assert figures["latency_ms_p99"] >= figures["latency_ms_p50"] > 0
    assert figures["server_cpu_ms_per_payment"] > 0 and figures["client_cpu_ms_per_payment"] > 0
    assert figures["workers"] == 2  # two server processes, one SQLite file
    assert figures["warm_up_payments"] == 2  # one a client, not measured


def test_the_checkout_benchmark_runs_on_one_server_process_too() -> None:
    args = [
        "bench",
        "checkout",
        "--json",
        "--payments",
        "10",
        "--users",
        "2",
        "--clients",
        "2",
        "--workers",
        "1",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    assert (figures["payments"], figures["errors"], figures["workers"]) == (10, 0, 1)
    assert figures["ledger_verify_ok"]
