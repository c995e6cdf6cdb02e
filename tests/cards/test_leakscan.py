"""The PAN leak scan can fail: it finds numbers planted in clear in files, tables and logs.

The planted numbers are public test cards that are not in the registry (`pans.py`), so
the scan of this very session does not trip over them.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from milletpay.cards import Expiry, PanVault
from milletpay.store import create_engine
from milletpay.store.engine import sqlite_path

from .leakscan import describe, encodings, scan_database, scan_files, scan_sqlite_files
from .pans import TEST_PANS, VALID_PANS

CANARY = "6011000990139424"  # 16 digits: even, one BCD form
CANARY_ODD = "378734493671000"  # 15 digits: two BCD forms
CANARY_MASKED = "601100******9424"
assert CANARY not in TEST_PANS and CANARY_ODD not in TEST_PANS


def test_every_encoding_of_a_planted_pan_is_found(tmp_path: Path) -> None:
    forms = {**encodings(CANARY), **encodings(CANARY_ODD)}
    assert set(forms) == {
        "ascii",
        "utf-16-le",
        "utf-16-be",
        "bcd",
        "bcd, F-padded",
        "bcd, 0-padded",
    }
    for encoding, form in forms.items():
        path = tmp_path / f"{encoding}.bin"
        path.write_bytes(b"\x00header" + form + b"trailer")
        leaks = scan_files([path], [CANARY, CANARY_ODD])
        assert [(leak.offset, leak.encoding) for leak in leaks] == [(7, encoding)]


def test_the_report_shows_the_number_masked(tmp_path: Path) -> None:
    path = tmp_path / "leak.txt"
    path.write_text(f"pan={CANARY}")
    report = describe(scan_files([path], [CANARY]))
    assert CANARY_MASKED in report and CANARY not in report
    assert "PAN leak: 1 card number(s) in clear" in report


def test_a_pan_in_a_table_is_found_through_sql_and_in_the_sqlite_files(
    database_url_factory: Callable[[], str],
) -> None:
    url = database_url_factory()
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE scratch (note VARCHAR(64), blob_value BYTEA)")
            conn.execute(
                sa.text("INSERT INTO scratch VALUES (:note, :blob)"),
                {"note": f"card {CANARY}", "blob": bytes.fromhex(CANARY)},
            )
        leaks = scan_database(engine, [CANARY])
        assert sorted((leak.where.split(":")[1], leak.encoding) for leak in leaks) == [
            ("scratch.blob_value row 0", "bcd"),
            ("scratch.note row 0", "ascii"),
        ]
        database = sqlite_path(url)
        if database is not None:  # the file (or its WAL) holds the row as written
            assert {leak.encoding for leak in scan_sqlite_files(database, [CANARY])} >= {
                "ascii",
                "bcd",
            }
    finally:
        engine.dispose()


def test_a_vault_full_of_cards_holds_none_in_clear(vault: PanVault, engine: sa.Engine) -> None:
    for pan in VALID_PANS:
        vault.store(pan, Expiry(2031, 9))
    assert scan_database(engine, TEST_PANS) == []


_INNER_CONFTEST = """
    from pathlib import Path

    import pytest

    from cards.leakscan import PLUGIN_NAME, PanLeakScan, plugin_of


    def pytest_configure(config):
        log_dir = Path(__file__).parent / "logs"
        config.pluginmanager.register(PanLeakScan([{canary!r}], log_dir), PLUGIN_NAME)


    @pytest.fixture(scope="session", autouse=True)
    def _basetemp(request, tmp_path_factory):
        plugin_of(request.config).basetemp = tmp_path_factory.getbasetemp()
"""


@pytest.mark.parametrize(
    ("test_body", "where"),
    [
        (f"(tmp_path / 'dump.txt').write_text('pan {CANARY}')", "dump.txt"),
        (f"(tmp_path / 'dump.bin').write_bytes(bytes.fromhex('{CANARY}'))", "dump.bin"),
        (f"logging.getLogger('milletpay.x').info('pan %s', '{CANARY}')", "session.log"),
        (f"logging.getLogger('other').warning('pan %s', '{CANARY}')", "session.log"),
    ],
)
def test_a_session_that_writes_a_pan_in_clear_fails(
    pytester: pytest.Pytester, test_body: str, where: str
) -> None:
    pytester.makeconftest(textwrap.dedent(_INNER_CONFTEST).format(canary=CANARY))
    pytester.makepyfile(f"import logging\n\ndef test_passes(tmp_path):\n    {test_body}\n")
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)  # every test passed, and yet:
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*PAN leak scan*", f"*{where}*{CANARY_MASKED}*"])
    assert CANARY not in result.stdout.str()


def test_a_session_that_writes_only_masks_passes(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(textwrap.dedent(_INNER_CONFTEST).format(canary=CANARY))
    pytester.makepyfile(
        "import logging\n\n"
        "def test_passes(tmp_path):\n"
        f"    (tmp_path / 'dump.txt').write_text('{CANARY_MASKED}')\n"
        f"    logging.getLogger('milletpay.x').info('{CANARY_MASKED}')\n"
    )
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["PAN leak scan: 1 test PANs, none in clear"])
