"""The PAN leak scan: find test card numbers in clear in files, databases and logs.

A card number is looked for in every form it could take when written by mistake: ASCII
digits, UTF-16 (both byte orders), and packed BCD (two digits a byte, as EMV tag 5A
holds a PAN; an odd length padded with F at the end or 0 in front). Sealed rows, masks,
fingerprints and PARs contain none of them.

`PanLeakScan` is the pytest plugin (registered by tests/conftest.py): it sends every log
record of the session to a file, and when the session ends scans that file and every
file under the session's temporary directory (the SQLite databases of every test among
them); a leak fails the session. The cards tests also scan their databases, PostgreSQL
included, after each test (`scan_database`, `scan_sqlite_files`): WAL files and
PostgreSQL databases are gone by the end of the session.
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from milletpay.cards.pan import MASK_HEAD_DIGITS, MASK_TAIL_DIGITS

PLUGIN_NAME = "millet-pan-leak-scan"
LOG_FILE_NAME = "session.log"
LEAKS_SHOWN_MAX = 20
_ZERO_RUN = re.compile(rb"\x00{2,}")


@dataclass(frozen=True, slots=True)
class Leak:
    where: str
    offset: int
    encoding: str
    masked: str  # the report never shows the number in clear either

    def __str__(self) -> str:
        return f"{self.where} at {self.offset}: {self.masked} as {self.encoding}"


def encodings(pan: str) -> dict[str, bytes]:
    """Every byte form of `pan` the scan looks for."""
    forms = {
        "ascii": pan.encode("ascii"),
        "utf-16-le": pan.encode("utf-16-le"),
        "utf-16-be": pan.encode("utf-16-be"),
    }
    if len(pan) % 2 == 0:
        forms["bcd"] = bytes.fromhex(pan)
    else:
        forms["bcd, F-padded"] = bytes.fromhex(pan + "F")
        forms["bcd, 0-padded"] = bytes.fromhex("0" + pan)
    return forms


def _masked(pan: str) -> str:
    hidden = len(pan) - MASK_HEAD_DIGITS - MASK_TAIL_DIGITS
    return pan[:MASK_HEAD_DIGITS] + "*" * hidden + pan[-MASK_TAIL_DIGITS:]


class Patterns:
    """All forms of all the PANs, and a quick way to look for them.

    Database files are mostly runs of zero bytes, where a search for a form that holds
    zeros (UTF-16, BCD) crawls. So each file is first searched with its zero runs
    squeezed to one zero byte, the forms likewise: a form in the file is then in the
    squeezed file too (its own runs squeeze alike, and one at its edge merges with the
    file's), and only a form found there is looked for, exactly, in the file itself.
    """

    def __init__(self, pans: Iterable[str]) -> None:
        self._forms = [
            (form, _squeeze(form), _masked(pan), encoding)
            for pan in pans
            for encoding, form in encodings(pan).items()
        ]

    def scan(self, data: bytes, where: str) -> list[Leak]:
        squeezed = _squeeze(data)
        leaks: list[Leak] = []
        for form, squeezed_form, masked, encoding in self._forms:
            if squeezed_form not in squeezed:
                continue
            offset = data.find(form)
            while offset != -1:
                leaks.append(Leak(where, offset, encoding, masked))
                offset = data.find(form, offset + 1)
        return sorted(leaks, key=lambda leak: leak.offset)


def _squeeze(data: bytes) -> bytes:
    return _ZERO_RUN.sub(b"\x00", data)


def scan_files(paths: Iterable[Path], pans: Iterable[str]) -> list[Leak]:
    patterns = Patterns(pans)
    leaks: list[Leak] = []
    for path in paths:
        try:
            data = path.read_bytes()
        except (FileNotFoundError, IsADirectoryError):  # removed while we looked
            continue
        leaks += patterns.scan(data, str(path))
    return leaks


def files_under(root: Path) -> Iterator[Path]:
    return (path for path in sorted(root.rglob("*")) if path.is_file() and not path.is_symlink())


def scan_sqlite_files(database: Path, pans: Iterable[str]) -> list[Leak]:
    """The database file and its -wal, -shm and -journal files."""
    return scan_files(sorted(database.parent.glob(database.name + "*")), pans)


def scan_database(engine: sa.Engine, pans: Iterable[str]) -> list[Leak]:
    """Every column of every row of every table, read through SQL as bytes or text."""
    patterns = Patterns(pans)
    leaks: list[Leak] = []
    with engine.connect() as conn:
        for table in sa.inspect(conn).get_table_names():
            quoted = conn.dialect.identifier_preparer.quote(table)
            result = conn.exec_driver_sql(f"SELECT * FROM {quoted}")
            columns = list(result.keys())
            for row_number, row in enumerate(result):
                for column, value in zip(columns, row, strict=True):
                    where = f"{engine.dialect.name}:{table}.{column} row {row_number}"
                    leaks += patterns.scan(_as_bytes(value), where)
    return leaks


def _as_bytes(value: object) -> bytes:
    if value is None:
        return b""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return str(value).encode("utf-8")


def plugin_of(config: pytest.Config) -> PanLeakScan:
    plugin = config.pluginmanager.get_plugin(PLUGIN_NAME)
    assert isinstance(plugin, PanLeakScan)
    return plugin


def describe(leaks: Sequence[Leak]) -> str:
    shown = "\n".join(f"  {leak}" for leak in leaks[:LEAKS_SHOWN_MAX])
    more = len(leaks) - LEAKS_SHOWN_MAX
    return f"PAN leak: {len(leaks)} card number(s) in clear\n{shown}" + (
        f"\n  ... and {more} more" if more > 0 else ""
    )


class PanLeakScan:
    """pytest plugin: log the session to a file, then scan it and the session's files."""

    def __init__(self, pans: Sequence[str], log_dir: Path) -> None:
        self.pans = tuple(pans)
        self.log_path = log_dir / LOG_FILE_NAME
        self.leaks: list[Leak] = []
        self.basetemp: Path | None = None  # set by the conftest's session fixture
        log_dir.mkdir(parents=True, exist_ok=True)
        self._handler = logging.FileHandler(self.log_path, encoding="utf-8")
        self._handler.setLevel(logging.DEBUG)
        self._handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self._milletpay = logging.getLogger("milletpay")
        self._level_before = self._milletpay.level
        self._milletpay.setLevel(logging.DEBUG)
        logging.getLogger().addHandler(self._handler)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self._handler.flush()
        paths = [self.log_path]
        if self.basetemp is not None and self.basetemp.exists():
            paths += files_under(self.basetemp)
        self.leaks = scan_files(paths, self.pans)
        if self.leaks:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if self.leaks:
            terminalreporter.section("PAN leak scan", red=True)
            terminalreporter.line(describe(self.leaks), red=True)
            terminalreporter.line(f"log kept at {self.log_path}")
        else:
            terminalreporter.line(f"PAN leak scan: {len(self.pans)} test PANs, none in clear")

    def pytest_unconfigure(self) -> None:
        logging.getLogger().removeHandler(self._handler)
        self._handler.close()
        self._milletpay.setLevel(self._level_before)
        if not self.leaks:
            shutil.rmtree(self.log_path.parent, ignore_errors=True)
