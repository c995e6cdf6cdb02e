"""Versioned AES-256-GCM data keys: sealing secrets at rest.

A `KeyRing` holds numbered 32-byte keys; the newest version seals, every version
opens, so keys can be rotated without rewriting old rows. Keys come from the
environment (`MILLET_DATA_KEYS`) or a key file (`MILLET_KEY_FILE`), never from code,
and never appear in a repr, a message or a log.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from milletpay.core.errors import MilletError

ENV_DATA_KEYS = "MILLET_DATA_KEYS"
ENV_KEY_FILE = "MILLET_KEY_FILE"
DEFAULT_KEY_FILE = "millet-keys.json"
KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12  # GCM's standard nonce
TAG_BYTES = 16
VERSION_MIN = 1
VERSION_MAX = 255  # the version is one byte of every sealed value
KEY_FILE_MODE = 0o600


class KeyRingError(MilletError):
    """The configured keys are missing or malformed; the message never shows a key."""

    code = "keyring_invalid"


class SealedDataError(MilletError):
    """A sealed value does not open: wrong key version, wrong AAD, or tampered bytes."""

    code = "sealed_data_invalid"


class KeyRing:
    """Versioned data keys. `seal` uses the newest; `open` uses the one the value names."""

    def __init__(self, keys: Mapping[int, bytes]) -> None:
        if not keys:
            raise KeyRingError("a key ring needs at least one key")
        for version, key in keys.items():
            if not VERSION_MIN <= version <= VERSION_MAX:
                raise KeyRingError(f"key version {version} is outside {VERSION_MIN}..{VERSION_MAX}")
            if len(key) != KEY_BYTES:
                raise KeyRingError(f"key version {version} is {len(key)} bytes, not {KEY_BYTES}")
        self._keys = {version: AESGCM(key) for version, key in keys.items()}
        self._root = keys[min(keys)]
        self.active_version = max(keys)

    def __repr__(self) -> str:
        return f"KeyRing(versions={sorted(self._keys)}, active={self.active_version})"

    @classmethod
    def generate(cls, versions: int = 1) -> KeyRing:
        """Fresh random keys, versions 1..`versions` (for tests and first set-up)."""
        return cls({v: AESGCM.generate_key(bit_length=256) for v in range(1, versions + 1)})

    @classmethod
    def from_json(cls, text: str, *, source: str) -> KeyRing:
        """{"1": "<base64 of 32 bytes>", ...}; `source` names where the text came from."""
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise KeyRingError(f"{source} is not JSON (line {exc.lineno})") from None
        if not isinstance(raw, dict):
            raise KeyRingError(f"{source} must be a JSON object of version -> base64 key")
        keys: dict[int, bytes] = {}
        for version_text, encoded in raw.items():
            if not (isinstance(version_text, str) and version_text.isdigit()):
                raise KeyRingError(f"{source}: key version {version_text!r} is not a number")
            try:
                keys[int(version_text)] = base64.b64decode(str(encoded), validate=True)
            except (binascii.Error, ValueError):
                raise KeyRingError(f"{source}: key {version_text} is not base64") from None
        return cls(keys)

    @classmethod
    def from_environment(
        cls, environ: Mapping[str, str] | None = None, *, cwd: Path | None = None
    ) -> KeyRing:
        """`MILLET_DATA_KEYS`, else the key file (`MILLET_KEY_FILE` or ./millet-keys.json).

        When neither variable is set and ./millet-keys.json does not exist, it is created
        with one fresh key and mode 0600: the sandbox set-up. A file named by
        `MILLET_KEY_FILE` must exist. A production deployment sets one of the two.
        """
        text, source = key_source_text(
            os.environ if environ is None else environ,
            value_var=ENV_DATA_KEYS,
            file_var=ENV_KEY_FILE,
            default_file=DEFAULT_KEY_FILE,
            first_text=_one_fresh_key,
            cwd=cwd,
            error=KeyRingError,
        )
        return cls.from_json(text, source=source)

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        """version byte + 12-byte random nonce + ciphertext and tag, bound to `aad`."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._keys[self.active_version].encrypt(nonce, plaintext, aad)
        return bytes([self.active_version]) + nonce + sealed

    def open(self, sealed: bytes, aad: bytes) -> bytes:
        """The plaintext of `seal(plaintext, aad)`; `SealedDataError` if it does not open."""
        if len(sealed) < 1 + NONCE_BYTES + TAG_BYTES:
            raise SealedDataError(f"sealed value is {len(sealed)} bytes, too short")
        version = sealed[0]
        cipher = self._keys.get(version)
        if cipher is None:
            raise SealedDataError(f"sealed with key version {version}, which is not loaded")
        nonce, body = sealed[1 : 1 + NONCE_BYTES], sealed[1 + NONCE_BYTES :]
        try:
            return cipher.decrypt(nonce, body, aad)
        except InvalidTag:
            raise SealedDataError(
                "sealed value failed authentication (tampered or wrong AAD)"
            ) from None

    def derive(self, purpose: bytes) -> bytes:
        """A 32-byte key for `purpose` (HMAC keys), from the oldest loaded key.

        The oldest key is the root so that rotating in a new data key does not change
        derived keys (and so the fingerprints stored under them stay comparable).
        """
        hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=purpose)
        return hkdf.derive(self._root)


def _one_fresh_key() -> str:
    encoded = base64.b64encode(AESGCM.generate_key(bit_length=256)).decode("ascii")
    return json.dumps({"1": encoded}) + "\n"


def key_source_text(
    environ: Mapping[str, str],
    *,
    value_var: str,
    file_var: str,
    default_file: str,
    first_text: Callable[[], str],
    cwd: Path | None,
    error: type[Exception],
) -> tuple[str, str]:
    """Key material (JSON text) and where it came from: the variable `value_var`, else
    the file `file_var` names, else `default_file`, which a sandbox's first run creates
    (mode 0600) with `first_text()`. One rule for every key file of the platform."""
    if environ.get(value_var):
        return environ[value_var], value_var
    named = environ.get(file_var)
    path = Path(named or default_file)
    if not path.is_absolute():
        path = (cwd or Path.cwd()) / path
    if named and not path.exists():
        # A named file that is missing is a broken deployment, not a first run: fresh
        # keys would leave everything made under the old ones unreadable.
        raise error(f"{file_var} names {path}, which does not exist")
    if not path.exists():
        publish_private_file(path, first_text())
    return path.read_text(encoding="utf-8"), str(path)


def publish_private_file(path: Path, text: str) -> None:
    """Publish `text` at `path` with mode 0600, unless the file already exists. The text
    is written to a private temporary file first and then linked into place, so a
    concurrent reader sees the whole file or none."""
    temporary = write_private_temporary(path, text)
    try:
        os.link(temporary, path)
    except FileExistsError:  # another process created it first: use theirs
        pass
    finally:
        temporary.unlink()


def write_private_temporary(path: Path, text: str) -> Path:
    """`text` in a new mode-0600 file beside `path`; its path."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_FILE_MODE)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(text)
    return temporary
