"""The issuers' key store: loading, first sandbox set-up, rotation, and never showing keys."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from milletpay.emv import crypto
from milletpay.emv.keys import (
    DEFAULT_ISSUER_KEY_FILE,
    ENV_ISSUER_KEY_FILE,
    ENV_ISSUER_KEYS,
    VERSION_MAX,
    IssuerKeyError,
    IssuerKeyStore,
    KeyKind,
)
from milletpay.emv.profiles import profile

BANKS = [("ICBC", "622202"), ("ICBC", "62220300"), ("CMB", "621483")]


def test_generate_gives_every_bank_and_bin_its_keys() -> None:
    store = IssuerKeyStore.generate(BANKS)
    assert store.owners(KeyKind.IMK_AC) == ["CMB/621483", "ICBC/622202", "ICBC/62220300"]
    assert store.owners(KeyKind.CVK) == ["CMB", "ICBC"]
    assert len(store.imk_ac("ICBC", "622202").key) == 16
    assert len(store.cvk("CMB").key) == 16
    assert len(store.pin_key("CMB").key) == 16
    assert len(store.data_key("CMB").key) == 32
    assert store.imk_ac("ICBC", "622202").key != store.imk_ac("ICBC", "62220300").key


def test_des_keys_are_generated_with_odd_parity() -> None:
    key = IssuerKeyStore.generate(BANKS).cvk("ICBC").key
    assert all(bin(byte).count("1") % 2 == 1 for byte in key)


def test_json_round_trip_keeps_every_key() -> None:
    store = IssuerKeyStore.generate(BANKS).rotated(KeyKind.CVK, "ICBC")
    loaded = IssuerKeyStore.from_json(store.to_json(), source="test")
    assert loaded.to_json() == store.to_json()
    assert loaded.cvk("ICBC", 1) == store.cvk("ICBC", 1)


def test_rotation_adds_a_version_and_keeps_the_old_one_for_verification() -> None:
    store = IssuerKeyStore.generate(BANKS)
    old = store.imk_ac("ICBC", "622202")
    rotated = store.rotated(KeyKind.IMK_AC, "ICBC/622202")
    new = rotated.imk_ac("ICBC", "622202")
    assert (old.version, new.version) == (1, 2)
    assert new.key != old.key
    assert rotated.imk_ac("ICBC", "622202", version=1) == old
    assert store.versions(KeyKind.IMK_AC, "ICBC/622202") == [1]  # the store is immutable

    # A cryptogram made under version 1 still verifies after the rotation.
    p = profile("unionpay-cvn01")
    data = {
        "9F02": bytes(6), "9F03": bytes(6), "9F1A": b"\x01\x56", "95": bytes(5),
        "5F2A": b"\x01\x56", "9A": b"\x25\x11\x26", "9C": b"\x00", "9F37": bytes(4),
        "82": b"\x18\x00", "9F36": b"\x00\x01", "9F10": bytes.fromhex("07010103A00000"),
    }  # fmt: skip
    mk_v1 = crypto.icc_master_key(p, old.key, "6222020000000000018", "00")
    arqc = crypto.generate_ac(p, mk_v1, data)
    kept = rotated.imk_ac("ICBC", "622202", version=1).key
    assert crypto.verify_arqc(p, crypto.icc_master_key(p, kept, "6222020000000000018"), data, arqc)


def test_rotation_stops_at_the_last_version() -> None:
    store = IssuerKeyStore({KeyKind.CVK: {"CMB": {VERSION_MAX: bytes(16)}}})
    with pytest.raises(IssuerKeyError, match="at version 255, the last"):
        store.rotated(KeyKind.CVK, "CMB")


def test_repr_shows_versions_never_keys() -> None:
    store = IssuerKeyStore.generate(BANKS)
    key = store.cvk("ICBC")
    for text in (repr(store), repr(key), str(store)):
        assert key.key.hex() not in text.lower()
        assert key.key.hex().upper() not in text
    assert "'ICBC': [1]" in repr(store)
    assert repr(key) == "VersionedKey(version=1)"


def test_unknown_owner_and_version_are_named() -> None:
    store = IssuerKeyStore.generate(BANKS)
    with pytest.raises(IssuerKeyError, match="no imk_ac key for ABC/622202"):
        store.imk_ac("ABC", "622202")
    with pytest.raises(IssuerKeyError, match="cvk key of ICBC has no version 7"):
        store.cvk("ICBC", 7)


@pytest.mark.parametrize(
    ("bank", "bin_", "what"),
    [("icbc", "622202", "bank code"), ("ICBC", "62220", "BIN of 6 to 8"), ("ICBC", None, "BIN")],
)
def test_malformed_bank_or_bin_is_refused(bank: str, bin_: str | None, what: str) -> None:
    with pytest.raises(IssuerKeyError, match=what):
        IssuerKeyStore.generate([(bank, bin_)])  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ("not json", "is not JSON"),
        ('{"format": 2}', "format 1"),
        ('{"format": 1, "zpk": {}}', "unknown sections"),
        ('{"format": 1, "cvk": {"ICBC": {"1": "zz"}}}', "is not hex"),
        ('{"format": 1, "cvk": {"ICBC": {"1": "00"}}}', "is 1 bytes, not 16"),
        ('{"format": 1, "cvk": {"ICBC": {"0": "' + "00" * 16 + '"}}}', "outside 1..255"),
        ('{"format": 1, "cvk": {"ICBC": {"x": "00"}}}', "version 'x'"),
        ('{"format": 1, "cvk": {"ICBC": {}}}', "has no versions"),
        ('{"format": 1, "imk_ac": {"ICBC": {"1": "' + "00" * 16 + '"}}}', "BIN"),
        ('{"format": 1, "cvk": {"ICBC/622202": {"1": "' + "00" * 16 + '"}}}', "per bank"),
    ],
)
def test_malformed_key_text_is_refused_without_showing_keys(text: str, what: str) -> None:
    with pytest.raises(IssuerKeyError, match=what) as caught:
        IssuerKeyStore.from_json(text, source="MILLET_ISSUER_KEYS")
    assert "00000000" not in str(caught.value)


def test_environment_variable_wins(tmp_path: Path) -> None:
    text = IssuerKeyStore.generate(BANKS).to_json()
    store = IssuerKeyStore.from_environment(BANKS, {ENV_ISSUER_KEYS: text}, cwd=tmp_path)
    assert store.to_json() == text
    assert not (tmp_path / DEFAULT_ISSUER_KEY_FILE).exists()


def test_first_sandbox_run_creates_the_default_file_mode_0600(tmp_path: Path) -> None:
    first = IssuerKeyStore.from_environment(BANKS, {}, cwd=tmp_path)
    path = tmp_path / DEFAULT_ISSUER_KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["format"] == 1
    again = IssuerKeyStore.from_environment(BANKS, {}, cwd=tmp_path)
    assert again.to_json() == first.to_json()  # the second run reads, never regenerates
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_existing_file_is_not_changed_and_a_missing_bank_is_refused(tmp_path: Path) -> None:
    IssuerKeyStore.from_environment(BANKS[:1], {}, cwd=tmp_path)
    store = IssuerKeyStore.from_environment(BANKS, {}, cwd=tmp_path)
    with pytest.raises(IssuerKeyError, match="no cvk key for CMB"):
        store.cvk("CMB")


def test_named_key_file_must_exist(tmp_path: Path) -> None:
    env = {ENV_ISSUER_KEY_FILE: str(tmp_path / "issuer.json")}
    with pytest.raises(IssuerKeyError, match="does not exist"):
        IssuerKeyStore.from_environment(BANKS, env, cwd=tmp_path)


def test_named_key_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "issuer.json"
    store = IssuerKeyStore.generate(BANKS)
    store.write_key_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = IssuerKeyStore.from_environment([], {ENV_ISSUER_KEY_FILE: "issuer.json"}, cwd=tmp_path)
    assert loaded.to_json() == store.to_json()


def test_rotation_written_to_the_file_keeps_old_versions(tmp_path: Path) -> None:
    path = tmp_path / DEFAULT_ISSUER_KEY_FILE
    store = IssuerKeyStore.from_environment(BANKS, {}, cwd=tmp_path)
    store.rotated(KeyKind.PIN, "ICBC").write_key_file(path)
    reloaded = IssuerKeyStore.from_environment(BANKS, {}, cwd=tmp_path)
    assert reloaded.versions(KeyKind.PIN, "ICBC") == [1, 2]
    assert reloaded.pin_key("ICBC", 1) == store.pin_key("ICBC")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_with_banks_adds_only_what_is_missing() -> None:
    store = IssuerKeyStore.generate(BANKS[:1])
    grown = store.with_banks(BANKS)
    assert grown.cvk("ICBC") == store.cvk("ICBC")
    assert grown.owners(KeyKind.IMK_AC) == ["CMB/621483", "ICBC/622202", "ICBC/62220300"]
