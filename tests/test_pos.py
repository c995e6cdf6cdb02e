"""`millet pos tap`: a tap from the command line is approved by the user's bank, through
the reader, the acquirer, the switch and the issuer host, with every hop printed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from stdnum.cn import ric
from typer.testing import CliRunner

from milletpay.banks import Banks
from milletpay.banks.keys import IssuerKeyStoreKeys, issuer_bins
from milletpay.cli import app
from milletpay.core.clock import SystemClock
from milletpay.core.keyring import KeyRing
from milletpay.emv.keys import IssuerKeyStore
from milletpay.identity import IdentityService, SimulatedSms
from milletpay.store import create_engine, upgrade

PHONE = "13912345678"
SUPERMARKET = "999100054110001"  # acquiring/merchants.toml: a single-message merchant


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A sandbox directory (its key files made on first use) with one registered user."""
    monkeypatch.chdir(tmp_path)
    for name in ("MILLET_DATA_KEYS", "MILLET_KEY_FILE", "MILLET_ISSUER_KEYS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("MILLET_ISSUER_KEY_FILE", raising=False)
    url = f"sqlite:///{tmp_path / 'millet.db'}"
    engine = create_engine(url)
    upgrade(engine)
    body = "11010519900101123"
    identity = IdentityService(engine, KeyRing.from_environment(), SystemClock(), SimulatedSms())
    identity.register(PHONE, "Wang Fang", body + ric.calc_check_digit(body + "0"))
    engine.dispose()
    yield url


def tap(url: str, amount: str, *, phone: str = PHONE, merchant: str = SUPERMARKET) -> object:
    args = ["pos", "tap", "--phone", phone, "--amount", amount, "--merchant", merchant]
    return CliRunner().invoke(app, [*args, "--database-url", url])


def test_a_tap_from_the_cli_is_approved_by_the_users_bank(sandbox: str) -> None:
    first = tap(sandbox, "25.00")
    assert first.exit_code == 0, first.output  # type: ignore[attr-defined]
    output: str = first.output  # type: ignore[attr-defined]
    assert "C-APDU 00A404000E325041592E5359532E444446303100" in output  # SELECT PPSE
    assert "MTI 0200" in output and "MTI 0210" in output
    assert "switch → issuer, with the card number" in output
    assert "approved: 00" in output
    second = tap(sandbox, "12.50")  # the same token again, with a new limited-use key
    assert second.exit_code == 0, second.output  # type: ignore[attr-defined]
    # The bank's books hold the two payments: 5,000.00 CNY deposited, 37.50 spent.
    banks = Banks(
        sandbox,
        KeyRing.from_environment(),
        IssuerKeyStoreKeys(IssuerKeyStore.from_environment(issuer_bins())),
        SystemClock(),
    )
    try:
        bank = banks.bank("ICBC")
        assert bank.verify().ok
        with bank.engine.connect() as conn:
            (account_id,) = conn.execute(sa.text("SELECT id FROM bank_accounts")).scalars()
        assert bank.balance(int.from_bytes(account_id, "big")).posted_fen == 500_000 - 3_750
    finally:
        banks.close()


def test_above_the_readers_cvm_limit_the_phone_asks_for_the_fingerprint(sandbox: str) -> None:
    result = tap(sandbox, "1500.00")  # the supermarket's no-CVM limit is 1,000.00
    assert result.exit_code == 1  # type: ignore[attr-defined]
    assert "without going online" in result.output  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"amount": "25.001"}, "is not an amount"),
        ({"amount": "0"}, "must be above 0"),
        ({"merchant": "999999999999999"}, "no merchant"),
        ({"phone": "13900000000"}, "no Millet Pay user"),
        ({"phone": "not a phone"}, "phone number"),
    ],
)
def test_bad_input_is_refused_naming_it(sandbox: str, changes: dict[str, str], says: str) -> None:
    amount = changes.pop("amount", "10.00")
    result = tap(sandbox, amount, **changes)
    assert result.exit_code == 2, result.output  # type: ignore[attr-defined]
    assert says in result.output  # type: ignore[attr-defined]


def test_the_tap_benchmark_reports_its_figures() -> None:
    result = CliRunner().invoke(app, ["bench", "tap", "--json", "--taps", "40", "--terminals", "4"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    assert (figures["taps"], figures["declined"]) == (40, 0)
    assert figures["taps_per_s"] > 0 and figures["latency_ms_p99"] >= figures["latency_ms_p50"]


def test_the_transit_benchmark_reports_gates_and_clearing() -> None:
    args = ["bench", "transit", "--json", "--taps", "300", "--clearing-records", "200"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    assert (figures["gate_taps"], figures["clearing_records"], figures["clearing_gaps"]) == (
        300,
        200,
        0,
    )
    assert figures["gate_latency_ms_p99"] >= figures["gate_latency_ms_p50"] > 0


def test_the_transit_benchmark_refuses_records_that_are_no_whole_cards() -> None:
    result = CliRunner().invoke(app, ["bench", "transit", "--clearing-records", "15"])
    assert result.exit_code == 2
    assert "--clearing-records" in result.output
