"""The PAN vault on both engines: store, reveal, mask, PAR, re-issue, and refusals."""

from __future__ import annotations

import hashlib
import logging
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from milletpay.cards import (
    MILLET_BIN_CONTROLLER_ID,
    PAR_CHARS,
    Expiry,
    Pan,
    PanAlreadyVaulted,
    PanInvalid,
    PanVault,
    VaultEntryUnreadable,
    VaultKeyMismatch,
    VaultRef,
    VaultRefUnknown,
    is_par,
)
from milletpay.cards.tables import vault_pans
from milletpay.core.clock import ManualClock
from milletpay.core.keyring import KeyRing

from .pans import (
    LUHN_INVALID,
    MASTERCARD,
    REISSUED,
    SHORTEST,
    UNIONPAY,
    UNIONPAY_19,
    VALID_PANS,
    VISA,
)

EXPIRY = Expiry(2031, 9)


def _row(engine: sa.Engine, ref: VaultRef) -> sa.Row[tuple[object, ...]]:
    with engine.connect() as conn:
        return conn.execute(
            sa.select(vault_pans).where(vault_pans.c.id == ref.id.to_bytes(16, "big"))
        ).one()


def _count(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(vault_pans)).scalar_one())


def test_store_then_reveal_returns_the_card(vault: PanVault) -> None:
    ref = vault.store(VISA, EXPIRY)
    card = vault.reveal(ref)
    assert card.pan == Pan(VISA)
    assert card.pan.clear_digits() == VISA
    assert card.expiry == EXPIRY
    assert VISA not in repr(card)


def test_every_length_round_trips(vault: PanVault) -> None:
    refs = {pan: vault.store(Pan(pan), EXPIRY) for pan in VALID_PANS}
    for pan, ref in refs.items():
        assert vault.reveal(ref).pan.clear_digits() == pan


def test_the_same_pan_twice_gets_the_same_reference_and_par(vault: PanVault) -> None:
    first = vault.store(VISA, EXPIRY)
    again = vault.store("4111 1111 1111 1111", Expiry(2033, 1))
    assert again == first
    assert vault.par(again) == vault.par(first)
    assert vault.reveal(first).expiry == EXPIRY  # a second store changes nothing


def test_different_pans_get_different_references_and_pars(vault: PanVault) -> None:
    refs = [vault.store(pan, EXPIRY) for pan in VALID_PANS]
    assert len(set(refs)) == len(VALID_PANS)
    assert len({vault.par(ref) for ref in refs}) == len(VALID_PANS)


def test_par_is_29_upper_case_alphanumerics_after_the_bin_controller(vault: PanVault) -> None:
    par = vault.par(vault.store(UNIONPAY, EXPIRY))
    assert len(par) == PAR_CHARS == 29
    assert is_par(par)
    assert par.startswith(MILLET_BIN_CONTROLLER_ID)
    assert UNIONPAY not in par


def test_par_is_the_same_from_another_vault_on_the_same_keys(
    vault: PanVault, engine: sa.Engine, keyring: KeyRing, clock: ManualClock
) -> None:
    par = vault.par(vault.store(VISA, EXPIRY))
    other = PanVault(engine, keyring, clock)
    assert other.par(other.store(VISA, EXPIRY)) == par


def test_entry_shows_the_mask_and_never_the_pan(vault: PanVault, clock: ManualClock) -> None:
    ref = vault.store(UNIONPAY_19, EXPIRY)
    entry = vault.entry(ref)
    assert entry.masked == vault.masked(ref) == "620550*********0004"
    assert entry.ref == ref
    assert entry.key_version == 1
    assert entry.created_at_ns == entry.updated_at_ns == clock.now_ns()
    assert UNIONPAY_19 not in repr(entry)


def test_the_row_holds_the_pan_sealed_fingerprinted_and_masked(
    vault: PanVault, engine: sa.Engine
) -> None:
    ref = vault.store(MASTERCARD, EXPIRY)
    row = _row(engine, ref)
    assert row.masked == "555555******4444"
    assert row.fingerprint != hashlib.sha256(MASTERCARD.encode()).digest()  # keyed, not plain
    assert len(row.fingerprint) == 32
    assert MASTERCARD.encode() not in bytes(row.sealed)
    assert row.sealed[0] == 1  # sealed under key version 1


def test_a_reference_round_trips_through_text(vault: PanVault) -> None:
    ref = vault.store(VISA, EXPIRY)
    assert str(ref).startswith("vref_") and len(str(ref)) == 37
    assert VaultRef.parse(str(ref)) == ref
    for text in ("vref_xyz", "ref_" + "0" * 32, "vref_" + "g" * 32):
        with pytest.raises(VaultRefUnknown):
            VaultRef.parse(text)


def test_an_unknown_reference_is_refused(vault: PanVault) -> None:
    unknown = VaultRef(12345)
    for call in (vault.reveal, vault.entry, vault.masked, vault.par):
        with pytest.raises(VaultRefUnknown, match=r"no card vref_0+3039 in the vault"):
            call(unknown)
    with pytest.raises(VaultRefUnknown):
        vault.replace_pan(unknown, VISA, EXPIRY)


def test_tampered_ciphertext_is_refused(vault: PanVault, engine: sa.Engine) -> None:
    ref = vault.store(VISA, EXPIRY)
    sealed = bytearray(_row(engine, ref).sealed)
    sealed[-1] ^= 0x01
    with engine.begin() as conn:
        conn.execute(
            sa.update(vault_pans)
            .where(vault_pans.c.id == ref.id.to_bytes(16, "big"))
            .values(sealed=bytes(sealed))
        )
    with pytest.raises(VaultEntryUnreadable) as refused:
        vault.reveal(ref)
    assert refused.value.code == "vault_entry_unreadable"
    assert str(ref) in refused.value.message
    assert "failed authentication" in refused.value.message


def test_swapped_rows_are_refused(vault: PanVault, engine: sa.Engine) -> None:
    """The AAD binds the sealed bytes to their row: moved to another row, they do not open."""
    first, second = vault.store(VISA, EXPIRY), vault.store(MASTERCARD, EXPIRY)
    sealed_first, sealed_second = _row(engine, first).sealed, _row(engine, second).sealed
    with engine.begin() as conn:
        for ref, sealed in ((first, sealed_second), (second, sealed_first)):
            conn.execute(
                sa.update(vault_pans)
                .where(vault_pans.c.id == ref.id.to_bytes(16, "big"))
                .values(sealed=sealed)
            )
    for ref in (first, second):
        with pytest.raises(VaultEntryUnreadable, match="failed authentication"):
            vault.reveal(ref)


@pytest.mark.parametrize(
    ("number", "part"),
    [
        (LUHN_INVALID, "checksum"),
        (SHORTEST[:-1], "length"),
        (VISA + "0000", "length"),
        (VISA[:-1] + "O", "characters"),
        ("", "length"),
    ],
)
def test_a_bad_pan_is_refused_masked_and_nothing_is_stored(
    vault: PanVault, engine: sa.Engine, number: str, part: str
) -> None:
    with pytest.raises(PanInvalid) as refused:
        vault.store(number, EXPIRY)
    assert refused.value.part == part
    if number:
        assert number not in str(refused.value)
    assert _count(engine) == 0


def test_a_re_issued_card_keeps_its_reference_and_par(vault: PanVault, clock: ManualClock) -> None:
    ref = vault.store(MASTERCARD, EXPIRY)
    par = vault.par(ref)
    clock.advance(seconds=60)
    entry = vault.replace_pan(ref, REISSUED, Expiry(2034, 3))
    assert (entry.ref, entry.par) == (ref, par)
    assert entry.masked == "520082******8210"
    assert entry.updated_at_ns > entry.created_at_ns
    card = vault.reveal(ref)
    assert (card.pan.clear_digits(), card.expiry) == (REISSUED, Expiry(2034, 3))
    assert vault.store(REISSUED, EXPIRY) == ref  # the new number finds the card
    old = vault.store(MASTERCARD, EXPIRY)  # the old number is no longer this card...
    assert old != ref
    assert vault.par(old) == par  # ...but it is the same account


def test_renewal_with_the_same_pan_changes_only_the_expiry(vault: PanVault) -> None:
    ref = vault.store(VISA, EXPIRY)
    vault.replace_pan(ref, VISA, Expiry(2035, 5))
    assert vault.reveal(ref).expiry == Expiry(2035, 5)
    assert vault.store(VISA, EXPIRY) == ref


def test_re_issue_to_a_number_held_by_another_card_is_refused(vault: PanVault) -> None:
    ref, other = vault.store(VISA, EXPIRY), vault.store(MASTERCARD, EXPIRY)
    with pytest.raises(PanAlreadyVaulted) as refused:
        vault.replace_pan(ref, MASTERCARD, EXPIRY)
    assert str(other) in refused.value.message
    assert MASTERCARD not in str(refused.value)
    assert vault.reveal(ref).pan == Pan(VISA)


def test_concurrent_stores_of_one_pan_make_one_card(vault: PanVault, engine: sa.Engine) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        refs = set(pool.map(lambda _: vault.store(UNIONPAY, EXPIRY), range(16)))
    assert len(refs) == 1
    assert _count(engine) == 1


def test_logs_show_only_masked_numbers(vault: PanVault, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="milletpay.cards"):
        ref = vault.store(VISA, EXPIRY)
        vault.replace_pan(ref, MASTERCARD, EXPIRY)
    assert "411111******1111" in caplog.text
    assert "555555******4444" in caplog.text
    assert VISA not in caplog.text and MASTERCARD not in caplog.text


def test_a_key_ring_without_the_vaults_root_key_cannot_store(
    vault: PanVault, engine: sa.Engine, clock: ManualClock
) -> None:
    """Fingerprints come from the oldest key: another one would vault a PAN twice."""
    vault.store(VISA, EXPIRY)
    stranger = PanVault(engine, KeyRing.generate(), clock)
    with pytest.raises(VaultKeyMismatch) as refused:
        stranger.store(VISA, EXPIRY)
    assert refused.value.code == "vault_fingerprint_key_changed"
    assert _count(engine) == 1


def test_another_key_ring_cannot_open_the_vault(
    vault: PanVault, engine: sa.Engine, clock: ManualClock
) -> None:
    ref = vault.store(VISA, EXPIRY)
    with pytest.raises(VaultEntryUnreadable):
        PanVault(engine, KeyRing.generate(), clock).reveal(ref)
