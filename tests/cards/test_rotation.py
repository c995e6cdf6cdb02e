"""Key rotation on both engines: every row re-encrypted, in batches, resumable."""

from __future__ import annotations

import os

import pytest
import sqlalchemy as sa

from milletpay.cards import Expiry, PanVault, VaultKeyMismatch, VaultRef
from milletpay.cards.tables import vault_pans
from milletpay.core.clock import ManualClock
from milletpay.core.keyring import KeyRing

from .pans import MORE, VISA

EXPIRY = Expiry(2031, 9)
KEY_1, KEY_2, KEY_3 = (os.urandom(32) for _ in range(3))


class Interrupted(Exception):
    pass


def _versions(engine: sa.Engine) -> list[int]:
    with engine.connect() as conn:
        return list(
            conn.execute(sa.select(vault_pans.c.key_version).order_by(vault_pans.c.id)).scalars()
        )


def _sealed(engine: sa.Engine) -> list[bytes]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(vault_pans.c.sealed).order_by(vault_pans.c.id))
        return [bytes(sealed) for sealed in rows.scalars()]


def _vault_on_key_1(engine: sa.Engine, clock: ManualClock) -> tuple[PanVault, list[VaultRef]]:
    vault = PanVault(engine, KeyRing({1: KEY_1}), clock)
    return vault, [vault.store(pan, EXPIRY) for pan in MORE[:7]]


def test_rotation_re_encrypts_every_row_under_the_active_key(
    engine: sa.Engine, clock: ManualClock
) -> None:
    old, refs = _vault_on_key_1(engine, clock)
    pars = [old.par(ref) for ref in refs]
    clock.advance(seconds=1)
    rotating = PanVault(engine, KeyRing({1: KEY_1, 2: KEY_2}), clock)
    seen: list[tuple[int, int]] = []
    assert rotating.rotate(lambda done, total: seen.append((done, total)), batch_rows=3) == 7
    assert seen == [(3, 7), (6, 7), (7, 7)]
    assert _versions(engine) == [2] * 7
    assert all(sealed[0] == 2 for sealed in _sealed(engine))
    entries = [rotating.entry(ref) for ref in refs]
    assert all(e.updated_at_ns > e.created_at_ns and e.key_version == 2 for e in entries)
    # The old key is no longer needed to open anything, and nothing else changed.
    without_key_1 = PanVault(engine, KeyRing({2: KEY_2}), clock)
    for ref, pan, par in zip(refs, MORE, pars, strict=False):
        assert without_key_1.reveal(ref).pan.clear_digits() == pan
        assert without_key_1.par(ref) == par


def test_fingerprints_still_need_the_root_key_after_rotation(
    engine: sa.Engine, clock: ManualClock
) -> None:
    """Rotation frees the old key from decryption; the fingerprint key stays derived from
    the oldest key, so a ring without it is refused rather than vaulting a PAN twice."""
    _vault_on_key_1(engine, clock)
    PanVault(engine, KeyRing({1: KEY_1, 2: KEY_2}), clock).rotate()
    with pytest.raises(VaultKeyMismatch):
        PanVault(engine, KeyRing({2: KEY_2}), clock).store(MORE[0], EXPIRY)


def test_rotation_with_nothing_to_do_changes_nothing(engine: sa.Engine, clock: ManualClock) -> None:
    _vault_on_key_1(engine, clock)
    rotating = PanVault(engine, KeyRing({1: KEY_1, 2: KEY_2}), clock)
    assert rotating.rotate() == 7
    sealed = _sealed(engine)
    assert rotating.rotate() == 0
    assert _sealed(engine) == sealed


def test_an_interrupted_rotation_keeps_its_batches_and_a_rerun_finishes(
    engine: sa.Engine, clock: ManualClock
) -> None:
    _, refs = _vault_on_key_1(engine, clock)
    rotating = PanVault(engine, KeyRing({1: KEY_1, 2: KEY_2}), clock)

    def stop_after_first_batch(done: int, total: int) -> None:
        raise Interrupted

    with pytest.raises(Interrupted):
        rotating.rotate(stop_after_first_batch, batch_rows=3)
    assert sorted(_versions(engine)) == [1, 1, 1, 1, 2, 2, 2]
    seen: list[tuple[int, int]] = []
    assert rotating.rotate(lambda done, total: seen.append((done, total)), batch_rows=3) == 4
    assert seen == [(3, 4), (4, 4)]
    assert _versions(engine) == [2] * 7
    assert [rotating.reveal(ref).pan.clear_digits() for ref in refs] == list(MORE[:7])


def test_rotation_over_two_generations_of_keys(engine: sa.Engine, clock: ManualClock) -> None:
    """Rows sealed under versions 1 and 2 both move to 3; new rows are sealed under 3."""
    _vault_on_key_1(engine, clock)
    second = PanVault(engine, KeyRing({1: KEY_1, 2: KEY_2}), clock)
    second.store(VISA, EXPIRY)
    third = PanVault(engine, KeyRing({1: KEY_1, 2: KEY_2, 3: KEY_3}), clock)
    third.store(MORE[7], EXPIRY)
    assert sorted(_versions(engine)) == [1] * 7 + [2, 3]
    assert third.rotate() == 8
    assert _versions(engine) == [3] * 9


def test_a_tampered_row_stops_rotation_and_the_batch_is_undone(
    engine: sa.Engine, clock: ManualClock
) -> None:
    from milletpay.cards import VaultEntryUnreadable

    _, refs = _vault_on_key_1(engine, clock)
    with engine.begin() as conn:
        conn.execute(
            sa.update(vault_pans)
            .where(vault_pans.c.id == refs[1].id.to_bytes(16, "big"))
            .values(sealed=b"\x01" + bytes(40))
        )
    rotating = PanVault(engine, KeyRing({1: KEY_1, 2: KEY_2}), clock)
    with pytest.raises(VaultEntryUnreadable, match=str(refs[1])):
        rotating.rotate(batch_rows=3)
    assert _versions(engine) == [1] * 7
