"""docs/iso8583.md and the tables in `milletpay.network.iso8583` say the same thing."""

from __future__ import annotations

from pathlib import Path

from milletpay.network import iso8583
from milletpay.network.iso8583 import Prefix

DOC = (Path(__file__).resolve().parents[2] / "docs" / "iso8583.md").read_text(encoding="utf-8")


def _rows(heading: str) -> list[list[str]]:
    """The body rows of the first table under `heading`, as lists of cells."""
    section = DOC.split(f"\n{heading}\n", 1)[1]
    rows: list[list[str]] = []
    for line in section.splitlines():
        if line.startswith("#"):
            break
        if line.startswith("| ") and not line.startswith("|---"):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows[1:]  # the header row


_PREFIXES = {Prefix.FIXED: "fixed", Prefix.LLVAR: "LLVAR", Prefix.LLLVAR: "LLLVAR"}


def _length(definition: iso8583.FieldDef) -> str:
    if definition.prefix is Prefix.FIXED or definition.min_len == definition.max_len:
        return str(definition.max_len)
    return f"{definition.min_len}..{definition.max_len}"


def test_the_field_table_is_fields() -> None:
    documented = {
        int(number): (name, kind, prefix, length)
        for number, name, kind, prefix, length, _ in _rows("## Fields")
    }
    expected = {
        d.number: (d.name, d.kind.value, _PREFIXES[d.prefix], _length(d))
        for d in iso8583.FIELDS.values()
    }
    assert documented == expected


def test_the_message_type_table_is_message_types() -> None:
    documented = {mti: (name, must, may) for mti, name, must, may in _rows("## Message types")}
    expected = {
        t.mti: (t.name, " ".join(map(str, sorted(t.must))), " ".join(map(str, sorted(t.may))))
        for t in iso8583.MESSAGE_TYPES.values()
    }
    assert documented == expected


def test_the_code_tables_are_the_code_tables() -> None:
    pos_entry_modes = _rows("### POS entry mode (field 22, first two digits)")
    assert dict(pos_entry_modes) == dict(iso8583.POS_ENTRY_MODES)
    assert dict(_rows("## Network management (field 70)")) == dict(iso8583.NMI_CODES)
    assert dict(_rows("## Response codes (field 39)")) == dict(iso8583.RESPONSE_CODES)
