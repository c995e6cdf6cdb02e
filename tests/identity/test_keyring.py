"""The key ring: AES-256-GCM sealing with versioned keys from the environment or a file."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from milletpay.core.keyring import (
    ENV_DATA_KEYS,
    ENV_KEY_FILE,
    KEY_BYTES,
    NONCE_BYTES,
    KeyRing,
    KeyRingError,
    SealedDataError,
)


def _keys_json(*versions: int) -> str:
    return json.dumps({str(v): base64.b64encode(bytes([v]) * KEY_BYTES).decode() for v in versions})


def test_sealed_value_opens_with_the_same_aad() -> None:
    ring = KeyRing.generate()
    sealed = ring.seal(b"secret", b"row-1")
    assert ring.open(sealed, b"row-1") == b"secret"


def test_sealed_value_is_version_byte_nonce_ciphertext_and_tag() -> None:
    ring = KeyRing.generate(versions=3)
    sealed = ring.seal(b"secret", b"aad")
    assert sealed[0] == 3
    assert len(sealed) == 1 + NONCE_BYTES + len(b"secret") + 16
    assert b"secret" not in sealed


def test_sealing_twice_gives_different_bytes() -> None:
    ring = KeyRing.generate()
    assert ring.seal(b"secret", b"aad") != ring.seal(b"secret", b"aad")


def test_other_aad_does_not_open() -> None:
    ring = KeyRing.generate()
    with pytest.raises(SealedDataError, match="authentication"):
        ring.open(ring.seal(b"secret", b"row-1"), b"row-2")


def test_tampered_value_does_not_open() -> None:
    ring = KeyRing.generate()
    sealed = bytearray(ring.seal(b"secret", b"aad"))
    sealed[-1] ^= 1
    with pytest.raises(SealedDataError):
        ring.open(bytes(sealed), b"aad")


def test_truncated_value_does_not_open() -> None:
    with pytest.raises(SealedDataError, match="too short"):
        KeyRing.generate().open(b"\x01abc", b"aad")


def test_newest_version_seals_and_older_versions_still_open() -> None:
    old = KeyRing.from_json(_keys_json(1), source="test")
    rotated = KeyRing.from_json(_keys_json(1, 2), source="test")
    sealed_before = old.seal(b"secret", b"aad")
    assert rotated.active_version == 2
    assert rotated.open(sealed_before, b"aad") == b"secret"
    assert rotated.seal(b"x", b"aad")[0] == 2


def test_value_sealed_with_an_unloaded_version_names_the_version() -> None:
    sealed = KeyRing.from_json(_keys_json(1, 2), source="test").seal(b"secret", b"aad")
    with pytest.raises(SealedDataError, match="version 2"):
        KeyRing.from_json(_keys_json(1), source="test").open(sealed, b"aad")


def test_derived_keys_survive_rotation_and_differ_by_purpose() -> None:
    old = KeyRing.from_json(_keys_json(1), source="test")
    rotated = KeyRing.from_json(_keys_json(1, 2), source="test")
    assert old.derive(b"a") == rotated.derive(b"a")
    assert old.derive(b"a") != old.derive(b"b")


def test_keys_come_from_the_environment_first(tmp_path: Path) -> None:
    ring = KeyRing.from_environment({ENV_DATA_KEYS: _keys_json(1, 7)}, cwd=tmp_path)
    assert ring.active_version == 7
    assert not list(tmp_path.iterdir())


def test_first_use_creates_a_private_key_file_and_reuses_it(tmp_path: Path) -> None:
    first = KeyRing.from_environment({}, cwd=tmp_path)
    path = tmp_path / "millet-keys.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    second = KeyRing.from_environment({}, cwd=tmp_path)
    assert second.open(first.seal(b"secret", b"aad"), b"aad") == b"secret"


def test_key_file_is_named_by_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "data.json"
    path.parent.mkdir()
    path.write_text(_keys_json(1, 2))
    assert KeyRing.from_environment({ENV_KEY_FILE: str(path)}).active_version == 2


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("not json", "not JSON"),
        ("[1]", "JSON object"),
        ('{"one": "AAAA"}', "not a number"),
        ('{"1": "***"}', "not base64"),
        ('{"1": "AAAA"}', "3 bytes, not 32"),
        ('{"0": "' + base64.b64encode(bytes(32)).decode() + '"}', "outside 1..255"),
        ("{}", "at least one key"),
    ],
)
def test_malformed_keys_are_refused_naming_the_problem(text: str, problem: str) -> None:
    with pytest.raises(KeyRingError, match=problem):
        KeyRing.from_environment({ENV_DATA_KEYS: text})


def test_key_material_never_shows_in_repr_or_errors() -> None:
    key = base64.b64encode(b"k" * 31).decode()
    ring = KeyRing.from_json(_keys_json(1), source="test")
    assert "AQEB" not in repr(ring) and repr(ring) == "KeyRing(versions=[1], active=1)"
    with pytest.raises(KeyRingError) as refused:
        KeyRing.from_json(json.dumps({"1": key}), source="test")
    assert key not in str(refused.value)


def test_a_named_key_file_that_is_missing_is_refused_not_created(tmp_path: Path) -> None:
    path = tmp_path / "missing.json"
    with pytest.raises(KeyRingError, match="does not exist"):
        KeyRing.from_environment({ENV_KEY_FILE: str(path)})
    assert not path.exists()
