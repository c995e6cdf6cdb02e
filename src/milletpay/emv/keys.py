"""The issuers' key store: issuer master keys per (bank, BIN), card verification keys, PIN
keys and data-encryption keys per bank, each versioned.

Keys come from the environment (`MILLET_ISSUER_KEYS`, JSON) or a key file
(`MILLET_ISSUER_KEY_FILE`, default ./millet-issuer-keys.json), never from code. The
sandbox's first run creates the default file (mode 0600) with fresh random keys for the
(bank, BIN) pairs it is given. Rotation adds a version and keeps the older ones, so
cryptograms and values made under them still verify. Key material never appears in a
repr, a message or a log; only kinds, owners and version numbers do.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Protocol

from pyemv import tools as _tools

from milletpay.core.errors import MilletError
from milletpay.core.keyring import key_source_text, write_private_temporary

ENV_ISSUER_KEYS = "MILLET_ISSUER_KEYS"
ENV_ISSUER_KEY_FILE = "MILLET_ISSUER_KEY_FILE"
DEFAULT_ISSUER_KEY_FILE = "millet-issuer-keys.json"

VERSION_MIN = 1
VERSION_MAX = 255  # one byte, as the derivation key index in the IAD carries it
OWNERS_PER_KIND_MAX = 10_000  # banks or (bank, BIN) pairs in one key store
FILE_FORMAT = 1

_BANK_CODE = re.compile(r"\A[A-Z0-9_]{2,16}\Z")
_BIN = re.compile(r"\A[0-9]{6,8}\Z")  # 6-digit BINs, and the 8-digit ones of ISO 7812-1:2017


class KeyKind(StrEnum):
    """What a key is for; the value is its section in the key file."""

    IMK_AC = "imk_ac"  # issuer master key for application cryptograms, per (bank, BIN)
    CVK = "cvk"  # card verification key pair (A || B), per bank
    PIN = "pin"  # PIN encryption / verification key, per bank
    DATA = "data"  # AES-256 data-encryption key, per bank


@dataclass(frozen=True, slots=True)
class KindRule:
    key_bytes: int
    per_bin: bool  # owned by (bank, BIN) rather than by bank
    des_parity: bool  # DES keys carry odd parity


KIND_RULES: Mapping[KeyKind, KindRule] = MappingProxyType(
    {
        KeyKind.IMK_AC: KindRule(key_bytes=16, per_bin=True, des_parity=True),
        KeyKind.CVK: KindRule(key_bytes=16, per_bin=False, des_parity=True),
        KeyKind.PIN: KindRule(key_bytes=16, per_bin=False, des_parity=True),
        KeyKind.DATA: KindRule(key_bytes=32, per_bin=False, des_parity=False),
    }
)


class IssuerKeyError(MilletError):
    """Issuer keys are missing, malformed or asked for under an unknown owner or version.
    The message never shows a key."""

    code = "issuer_keys_invalid"


@dataclass(frozen=True, slots=True, repr=False)
class VersionedKey:
    version: int
    key: bytes

    def __repr__(self) -> str:
        return f"VersionedKey(version={self.version})"


class ImkSource(Protocol):
    """Where the token service gets issuer master keys for application cryptograms:
    `IssuerKeyStore`, or a wrapper that loads one when first asked."""

    def imk_ac(self, bank: str, bin_: str, version: int | None = None) -> VersionedKey:
        """The IMK-AC of (bank, BIN): version `version`, or the newest."""
        ...


def owner_of(kind: KeyKind, bank: str, bin_: str | None = None) -> str:
    """The owner name a kind's keys are filed under: "BANK/BIN" or "BANK"."""
    if not _BANK_CODE.match(bank):
        raise IssuerKeyError(f"bank code {bank!r} is not 2-16 of A-Z, 0-9, _")
    if not KIND_RULES[kind].per_bin:
        if bin_ is not None:
            raise IssuerKeyError(f"{kind} keys are per bank, not per BIN")
        return bank
    if bin_ is None or not _BIN.match(bin_):
        raise IssuerKeyError(f"{kind} keys need a BIN of 6 to 8 digits, got {bin_!r}")
    return f"{bank}/{bin_}"


class IssuerKeyStore:
    """Immutable: `rotated` returns a new store with one more version of one key."""

    def __init__(self, keys: Mapping[KeyKind, Mapping[str, Mapping[int, bytes]]]) -> None:
        checked: dict[KeyKind, dict[str, dict[int, bytes]]] = {kind: {} for kind in KeyKind}
        for kind, owners in keys.items():
            if len(owners) > OWNERS_PER_KIND_MAX:
                raise IssuerKeyError(f"{kind}: {len(owners)} owners, over {OWNERS_PER_KIND_MAX}")
            for owner, versions in owners.items():
                _check_owner(kind, owner)
                checked[kind][owner] = _checked_versions(kind, owner, versions)
        self._keys = checked

    def __repr__(self) -> str:
        shown = {
            kind.value: {owner: sorted(v) for owner, v in sorted(owners.items())}
            for kind, owners in self._keys.items()
        }
        return f"IssuerKeyStore({shown})"

    # --- lookups ---

    def imk_ac(self, bank: str, bin_: str, version: int | None = None) -> VersionedKey:
        """The issuer master key for application cryptograms of a BIN (newest by default)."""
        return self.key(KeyKind.IMK_AC, owner_of(KeyKind.IMK_AC, bank, bin_), version)

    def cvk(self, bank: str, version: int | None = None) -> VersionedKey:
        return self.key(KeyKind.CVK, owner_of(KeyKind.CVK, bank), version)

    def pin_key(self, bank: str, version: int | None = None) -> VersionedKey:
        return self.key(KeyKind.PIN, owner_of(KeyKind.PIN, bank), version)

    def data_key(self, bank: str, version: int | None = None) -> VersionedKey:
        return self.key(KeyKind.DATA, owner_of(KeyKind.DATA, bank), version)

    def key(self, kind: KeyKind, owner: str, version: int | None = None) -> VersionedKey:
        versions = self._keys[kind].get(owner)
        if not versions:
            raise IssuerKeyError(f"no {kind} key for {owner}")
        chosen = max(versions) if version is None else version
        if chosen not in versions:
            raise IssuerKeyError(f"{kind} key of {owner} has no version {chosen}")
        return VersionedKey(chosen, versions[chosen])

    def versions(self, kind: KeyKind, owner: str) -> list[int]:
        return sorted(self._keys[kind].get(owner, {}))

    def owners(self, kind: KeyKind) -> list[str]:
        return sorted(self._keys[kind])

    # --- changes ---

    def rotated(self, kind: KeyKind, owner: str) -> IssuerKeyStore:
        """A store where `owner`'s `kind` key has a fresh newest version; older versions
        stay for verification. A new owner starts at version 1."""
        _check_owner(kind, owner)
        versions = self._keys[kind].get(owner, {})
        version = max(versions, default=0) + 1
        if version > VERSION_MAX:
            raise IssuerKeyError(f"{kind} key of {owner} is at version {VERSION_MAX}, the last")
        keys = {k: dict(owners) for k, owners in self._keys.items()}
        keys[kind][owner] = {**versions, version: _fresh_key(kind)}
        return IssuerKeyStore(keys)

    def with_banks(self, bank_bins: Iterable[tuple[str, str]]) -> IssuerKeyStore:
        """A store that also has version 1 of every key the given (bank, BIN) pairs need
        and do not have yet; keys already present are kept as they are."""
        store = self
        for bank, bin_ in bank_bins:
            for kind in KeyKind:
                owner = owner_of(kind, bank, bin_ if KIND_RULES[kind].per_bin else None)
                if not store.versions(kind, owner):
                    store = store.rotated(kind, owner)
        return store

    # --- loading and saving ---

    @classmethod
    def generate(cls, bank_bins: Iterable[tuple[str, str]]) -> IssuerKeyStore:
        """Fresh random keys for the given (bank, BIN) pairs (sandbox set-up and tests)."""
        return cls({}).with_banks(bank_bins)

    def to_json(self) -> str:
        """The key file's text. It holds every key: write it only to a 0600 file."""
        body: dict[str, object] = {"format": FILE_FORMAT}
        for kind, owners in self._keys.items():
            body[kind.value] = {
                owner: {str(v): key.hex().upper() for v, key in sorted(versions.items())}
                for owner, versions in sorted(owners.items())
            }
        return json.dumps(body, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, *, source: str) -> IssuerKeyStore:
        """Parse the key file format; `source` names where the text came from."""
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise IssuerKeyError(f"{source} is not JSON (line {exc.lineno})") from None
        if not isinstance(raw, dict) or raw.get("format") != FILE_FORMAT:
            raise IssuerKeyError(f"{source} must be a JSON object with format {FILE_FORMAT}")
        unknown = set(raw) - {"format"} - {kind.value for kind in KeyKind}
        if unknown:
            raise IssuerKeyError(f"{source}: unknown sections {sorted(unknown)}")
        keys = {kind: _parse_section(raw.get(kind.value, {}), kind, source) for kind in KeyKind}
        return cls(keys)

    @classmethod
    def from_environment(
        cls,
        bank_bins: Iterable[tuple[str, str]],
        environ: Mapping[str, str] | None = None,
        *,
        cwd: Path | None = None,
    ) -> IssuerKeyStore:
        """`MILLET_ISSUER_KEYS`, else the key file (`MILLET_ISSUER_KEY_FILE` or
        ./millet-issuer-keys.json).

        When neither variable is set and the default file does not exist, it is created
        (mode 0600) with fresh keys for `bank_bins`: the sandbox set-up. A file named by
        `MILLET_ISSUER_KEY_FILE` must exist, and an existing file is never changed here:
        a bank missing from it is refused when its keys are asked for.
        """
        text, source = key_source_text(
            os.environ if environ is None else environ,
            value_var=ENV_ISSUER_KEYS,
            file_var=ENV_ISSUER_KEY_FILE,
            default_file=DEFAULT_ISSUER_KEY_FILE,
            first_text=lambda: cls.generate(bank_bins).to_json(),
            cwd=cwd,
            error=IssuerKeyError,
        )
        return cls.from_json(text, source=source)

    def write_key_file(self, path: Path) -> None:
        """Replace `path` with this store (rotation), mode 0600, atomically."""
        os.replace(write_private_temporary(path, self.to_json()), path)


def _parse_section(section: object, kind: KeyKind, source: str) -> dict[str, dict[int, bytes]]:
    if not isinstance(section, dict):
        raise IssuerKeyError(f"{source}: {kind} must be an object of owner -> versions")
    parsed: dict[str, dict[int, bytes]] = {}
    for owner, versions in section.items():
        if not isinstance(versions, dict):
            raise IssuerKeyError(f"{source}: {kind} {owner} must be an object of version -> key")
        parsed[owner] = {}
        for version_text, encoded in versions.items():
            if not (isinstance(version_text, str) and version_text.isdigit()):
                raise IssuerKeyError(f"{source}: {kind} {owner} version {version_text!r}")
            try:
                parsed[owner][int(version_text)] = bytes.fromhex(str(encoded))
            except ValueError:
                raise IssuerKeyError(
                    f"{source}: {kind} key {owner} v{version_text} is not hex"
                ) from None
    return parsed


def _check_owner(kind: KeyKind, owner: str) -> None:
    bank, _, bin_ = owner.partition("/")
    if owner_of(kind, bank, bin_ or None) != owner:
        raise IssuerKeyError(f"{kind} owner {owner!r} is malformed")


def _checked_versions(kind: KeyKind, owner: str, versions: Mapping[int, bytes]) -> dict[int, bytes]:
    if not versions:
        raise IssuerKeyError(f"{kind} key of {owner} has no versions")
    rule = KIND_RULES[kind]
    for version, key in versions.items():
        if not VERSION_MIN <= version <= VERSION_MAX:
            raise IssuerKeyError(
                f"{kind} key of {owner}: version {version} is outside {VERSION_MIN}..{VERSION_MAX}"
            )
        if len(key) != rule.key_bytes:
            raise IssuerKeyError(
                f"{kind} key of {owner} v{version} is {len(key)} bytes, not {rule.key_bytes}"
            )
    return dict(versions)


def _fresh_key(kind: KeyKind) -> bytes:
    rule = KIND_RULES[kind]
    key = secrets.token_bytes(rule.key_bytes)
    return _tools.adjust_key_parity(key) if rule.des_parity else key
