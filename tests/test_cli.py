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


def test_serve_with_two_workers_runs_two_server_processes_that_answer(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`millet serve --workers 2`: two server processes on one port and one SQLite file,
    each building the app from the environment; both migrate and serve."""
    import signal
    import socket
    import subprocess
    import sys
    import time

    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"sqlite:///{tmp_path / 'served.db'}"
    command = [sys.executable, "-m", "milletpay.cli", "serve", "--database-url", url]
    server = subprocess.Popen(
        [*command, "--port", str(port), "--workers", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path,  # the sandbox's key files are made here, once
    )
    try:
        answered: set[str] = set()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and server.poll() is None:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=5)
            except httpx.HTTPError:
                time.sleep(0.2)
                continue
            assert health.status_code == 200
            assert health.json()["database"] == "sqlite"
            answered.add("ok")
            break
        assert answered == {"ok"}, "the server did not answer"
        children = subprocess.run(
            ["pgrep", "-P", str(server.pid)], capture_output=True, text=True, check=False
        ).stdout.split()
        assert len(children) >= 2  # uvicorn's two worker processes
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()


def test_serve_with_workers_hands_its_processes_only_what_it_was_told(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """The processes of `--workers` read their database and card network from the
    environment: a card network variable left over in the shell is not served."""
    import os

    import uvicorn

    seen: dict[str, object] = {}

    def run(app: object, **options: object) -> None:
        seen.update(
            app=app,
            workers=options["workers"],
            url=os.environ.get("MILLET_DATABASE_URL"),
            switch=os.environ.get("MILLET_CARD_NETWORK"),
        )

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(uvicorn, "run", run)
    monkeypatch.setenv("MILLET_CARD_NETWORK", "10.0.0.9:9999")
    monkeypatch.delenv("MILLET_DATABASE_URL", raising=False)  # restored after the test
    url = f"sqlite:///{tmp_path / 'served.db'}"
    result = CliRunner().invoke(app, ["serve", "--database-url", url, "--workers", "3"])
    assert result.exit_code == 0, result.output
    assert seen == {
        "app": "milletpay.api.app:app_from_environment",
        "workers": 3,
        "url": url,
        "switch": None,
    }
    result = CliRunner().invoke(
        app, ["serve", "--database-url", url, "--workers", "2", "--card-network", "h:7000"]
    )
    assert result.exit_code == 0, result.output
    assert seen["switch"] == "h:7000"
