"""`PanVault`: the one place a card number is kept, sealed, and the one place it is opened.

The vault stores each PAN with its expiry sealed under the key ring's active AES-256-GCM
data key (the AAD binds the sealed bytes to their row), finds a PAN again by its keyed
fingerprint, and answers everyone else with a `VaultRef`, the mask and the PAR.

Who may call `reveal`: the token service, to provision a token with the card network,
and the card network's detokenization, which maps a token back to its PAN. Nothing that
faces the phone, the API or a log may call it: they get `masked` and `par`.

It never logs, returns in an error, or writes unsealed a PAN in clear.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

import sqlalchemy as sa

from milletpay.cards import fingerprint as fingerprints
from milletpay.cards.errors import (
    PanAlreadyVaulted,
    VaultEntryUnreadable,
    VaultKeyMismatch,
    VaultRefUnknown,
)
from milletpay.cards.pan import Expiry, Pan
from milletpay.cards.par import MILLET_BIN_CONTROLLER_ID, derive_par
from milletpay.cards.tables import vault_meta, vault_pans
from milletpay.core.clock import Clock
from milletpay.core.ids import IdGenerator, id_from_bytes, id_to_bytes
from milletpay.core.keyring import KeyRing, SealedDataError
from milletpay.store.engine import read_transaction, write_transaction

ROTATE_BATCH_ROWS: Final = 500  # rows re-encrypted per transaction by `rotate`
ROTATE_BATCH_ROWS_MAX: Final = 10_000
STORE_ATTEMPTS_MAX: Final = 2  # a second try finds the row a concurrent store inserted
REF_PREFIX: Final = "vref_"
_AAD_SEALED: Final = b"vault_pans.sealed|"
_META_ID: Final = 1
_PLAINTEXT_SEPARATOR: Final = "|"

log = logging.getLogger(__name__)

#: `rotate`'s progress callback: rows re-encrypted so far, rows to re-encrypt in all.
RotateProgress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True, order=True)
class VaultRef:
    """The opaque reference of a vaulted card: `vref_` and 32 hex digits."""

    id: int

    def __post_init__(self) -> None:
        if not 0 <= self.id < 1 << 128:
            raise VaultRefUnknown(f"vault reference {self.id} is not a 128-bit id")

    def __str__(self) -> str:
        return f"{REF_PREFIX}{self.id:032x}"

    @classmethod
    def parse(cls, text: str) -> VaultRef:
        digits = text.removeprefix(REF_PREFIX)
        if not (text.startswith(REF_PREFIX) and len(digits) == 32):
            raise VaultRefUnknown(f"{text!r} is not a vault reference (vref_ + 32 hex digits)")
        try:
            return cls(int(digits, 16))
        except ValueError:
            raise VaultRefUnknown(f"{text!r} is not a vault reference") from None


@dataclass(frozen=True, slots=True)
class RevealedCard:
    """What `reveal` opens. Its repr shows the PAN masked, like `Pan`'s."""

    pan: Pan
    expiry: Expiry


@dataclass(frozen=True, slots=True)
class VaultEntry:
    """What anyone may know of a vaulted card."""

    ref: VaultRef
    masked: str
    par: str
    key_version: int
    created_at_ns: int
    updated_at_ns: int


class PanVault:
    """Card numbers sealed at rest; thread-safe. See the module docstring for `reveal`."""

    def __init__(
        self,
        engine: sa.Engine,
        keyring: KeyRing,
        clock: Clock,
        *,
        bin_controller_id: str = MILLET_BIN_CONTROLLER_ID,
    ) -> None:
        self._engine = engine
        self._keyring = keyring
        self._clock = clock
        self._ids = IdGenerator(clock)
        self._bin_controller_id = bin_controller_id
        self._key_checked = False

    # -- storing --------------------------------------------------------------------

    def store(self, pan: Pan | str, expiry: Expiry) -> VaultRef:
        """The reference of this card: a new one, or the one the PAN already has (the row
        is then left as it was; `replace_pan` changes the expiry). `PanInvalid` if bad."""
        card = pan if isinstance(pan, Pan) else Pan(pan)
        fingerprint = fingerprints.fingerprint(self._keyring, card)
        for attempt in range(1, STORE_ATTEMPTS_MAX + 1):
            try:
                with write_transaction(self._engine) as conn:
                    ref, created = self._store(conn, card, expiry, fingerprint)
                self._key_checked = True  # only once the check (or its row) is committed
                break
            except sa.exc.IntegrityError:  # a concurrent store of the same PAN won
                if attempt == STORE_ATTEMPTS_MAX:
                    raise
        if created:
            log.info("vaulted card %s as %s", card.masked, ref)
        return ref

    def _store(
        self, conn: sa.Connection, pan: Pan, expiry: Expiry, fingerprint: bytes
    ) -> tuple[VaultRef, bool]:
        self._check_fingerprint_key(conn)
        existing = conn.execute(
            sa.select(vault_pans.c.id).where(vault_pans.c.fingerprint == fingerprint)
        ).scalar_one_or_none()
        if existing is not None:
            return VaultRef(id_from_bytes(existing)), False
        ref = VaultRef(self._ids.next_id())
        key = id_to_bytes(ref.id)
        now_ns = self._clock.now_ns()
        conn.execute(
            sa.insert(vault_pans).values(
                id=key,
                fingerprint=fingerprint,
                sealed=self._seal(key, pan, expiry),
                key_version=self._keyring.active_version,
                masked=pan.masked,
                par=derive_par(self._keyring, fingerprint, self._bin_controller_id),
                created_at=now_ns,
                updated_at=now_ns,
            )
        )
        return ref, True

    def replace_pan(self, ref: VaultRef, new_pan: Pan | str, new_expiry: Expiry) -> VaultEntry:
        """A re-issued card: the same reference and PAR, a new PAN and expiry (or the same
        PAN and a new expiry). `PanAlreadyVaulted` if another reference holds the PAN.

        The old PAN then no longer finds this card; vaulted again, it gets a reference of
        its own and the PAR of its own fingerprint (for the card's first PAN, that is the
        card's PAR again: the same account)."""
        card = new_pan if isinstance(new_pan, Pan) else Pan(new_pan)
        fingerprint = fingerprints.fingerprint(self._keyring, card)
        key = id_to_bytes(ref.id)
        with write_transaction(self._engine) as conn:
            self._check_fingerprint_key(conn)
            row = conn.execute(
                sa.select(vault_pans.c.id).where(vault_pans.c.id == key).with_for_update()
            ).one_or_none()
            if row is None:
                raise VaultRefUnknown(f"no card {ref} in the vault")
            holder = conn.execute(
                sa.select(vault_pans.c.id).where(vault_pans.c.fingerprint == fingerprint)
            ).scalar_one_or_none()
            if holder is not None and holder != key:
                other = VaultRef(id_from_bytes(holder))
                raise PanAlreadyVaulted(f"card {card.masked} is already in the vault as {other}")
            conn.execute(
                sa.update(vault_pans)
                .where(vault_pans.c.id == key)
                .values(
                    fingerprint=fingerprint,
                    sealed=self._seal(key, card, new_expiry),
                    key_version=self._keyring.active_version,
                    masked=card.masked,
                    updated_at=self._clock.now_ns(),
                )
            )
            entry = self._entry(conn, ref)
        self._key_checked = True
        log.info("re-issued card %s as %s", ref, card.masked)
        return entry

    # -- reading --------------------------------------------------------------------

    def reveal(self, ref: VaultRef) -> RevealedCard:
        """The PAN and expiry in clear: for the token service and the card network only.
        `VaultRefUnknown`; `VaultEntryUnreadable` if the row was tampered with or swapped."""
        key = id_to_bytes(ref.id)
        with read_transaction(self._engine) as conn:
            sealed = conn.execute(_SEALED_BY_ID, {"the_ref": key}).scalar_one_or_none()
        return self.open_sealed(ref, sealed)

    def open_sealed(self, ref: VaultRef, sealed: bytes | None) -> RevealedCard:
        """`reveal` for a caller that read the entry's sealed column itself (the card
        network's detokenizer reads it with the token, in one statement): None is no
        entry. The same errors as `reveal`."""
        if sealed is None:
            raise VaultRefUnknown(f"no card {ref} in the vault")
        return self._open(ref, bytes(sealed))

    def find(self, pan: Pan | str) -> VaultRef | None:
        """The reference of the card with this PAN, if the vault holds it (by fingerprint:
        nothing is decrypted). `PanInvalid` if the number is bad."""
        card = pan if isinstance(pan, Pan) else Pan(pan)
        fingerprint = fingerprints.fingerprint(self._keyring, card)
        with read_transaction(self._engine) as conn:
            found = conn.execute(
                sa.select(vault_pans.c.id).where(vault_pans.c.fingerprint == fingerprint)
            ).scalar_one_or_none()
        return None if found is None else VaultRef(id_from_bytes(found))

    def entry(self, ref: VaultRef) -> VaultEntry:
        """The reference, mask, PAR, key version and times; never the PAN."""
        with read_transaction(self._engine) as conn:
            return self._entry(conn, ref)

    def masked(self, ref: VaultRef) -> str:
        return self.entry(ref).masked

    def par(self, ref: VaultRef) -> str:
        return self.entry(ref).par

    def _entry(self, conn: sa.Connection, ref: VaultRef) -> VaultEntry:
        row = conn.execute(
            sa.select(
                vault_pans.c.masked,
                vault_pans.c.par,
                vault_pans.c.key_version,
                vault_pans.c.created_at,
                vault_pans.c.updated_at,
            ).where(vault_pans.c.id == id_to_bytes(ref.id))
        ).one_or_none()
        if row is None:
            raise VaultRefUnknown(f"no card {ref} in the vault")
        return VaultEntry(ref, row.masked, row.par, row.key_version, *row[3:])

    # -- key rotation ---------------------------------------------------------------

    def rotate(
        self, progress: RotateProgress | None = None, *, batch_rows: int = ROTATE_BATCH_ROWS
    ) -> int:
        """Re-encrypt every row sealed under an older key version with the active one, in
        transactions of `batch_rows`; the number of rows re-encrypted.

        Each batch commits on its own, so an interrupted rotation keeps what it did and a
        second call finishes the rest; a call with nothing left to do changes nothing.
        Afterwards the older data keys open nothing in the vault and may be retired (the
        oldest key still derives the fingerprint and PAR keys: see `VaultKeyMismatch`).
        """
        assert 1 <= batch_rows <= ROTATE_BATCH_ROWS_MAX, "batch_rows out of range"
        active = self._keyring.active_version
        with read_transaction(self._engine) as conn:
            total = conn.execute(
                sa.select(sa.func.count())
                .select_from(vault_pans)
                .where(vault_pans.c.key_version < active)
            ).scalar_one()
        done = 0
        after = b""
        # Ids only grow, so the walk ends; rows stored by an older key ring meanwhile
        # and beyond the bound are left for the next call.
        for _ in range(total // batch_rows + 1):
            with write_transaction(self._engine) as conn:
                rows = self._rotate_batch(conn, active, after, batch_rows)
            if not rows:
                break
            done += len(rows)
            after = rows[-1]
            log.info("re-encrypted %d of %d vault rows to key version %d", done, total, active)
            if progress is not None:
                progress(done, total)
        return done

    def _rotate_batch(
        self, conn: sa.Connection, active: int, after: bytes, batch_rows: int
    ) -> Sequence[bytes]:
        """Re-seal one batch of stale rows after id `after`; their ids, in order."""
        rows = conn.execute(
            sa.select(vault_pans.c.id, vault_pans.c.sealed)
            .where(vault_pans.c.key_version < active, vault_pans.c.id > after)
            .order_by(vault_pans.c.id)
            .limit(batch_rows)
            .with_for_update()
        ).all()
        if not rows:
            return []
        now_ns = self._clock.now_ns()
        updates = [
            {"row_id": row.id, "new_sealed": self._reseal(row.id, row.sealed)} for row in rows
        ]
        conn.execute(
            sa.update(vault_pans)
            .where(vault_pans.c.id == sa.bindparam("row_id"))
            .values(sealed=sa.bindparam("new_sealed"), key_version=active, updated_at=now_ns),
            updates,
        )
        return [row.id for row in rows]

    # -- sealing --------------------------------------------------------------------

    def _seal(self, key: bytes, pan: Pan, expiry: Expiry) -> bytes:
        plaintext = _PLAINTEXT_SEPARATOR.join(
            (pan.clear_digits(), f"{expiry.year:04d}{expiry.month:02d}")
        )
        return self._keyring.seal(plaintext.encode("ascii"), _AAD_SEALED + key)

    def _reseal(self, key: bytes, sealed: bytes) -> bytes:
        ref = VaultRef(id_from_bytes(key))
        plaintext = self._open_bytes(ref, sealed)
        return self._keyring.seal(plaintext, _AAD_SEALED + key)

    def _open(self, ref: VaultRef, sealed: bytes) -> RevealedCard:
        plaintext = self._open_bytes(ref, sealed).decode("ascii")
        digits, _, yyyymm = plaintext.partition(_PLAINTEXT_SEPARATOR)
        return RevealedCard(Pan(digits), Expiry(int(yyyymm[:4]), int(yyyymm[4:])))

    def _open_bytes(self, ref: VaultRef, sealed: bytes) -> bytes:
        try:
            return self._keyring.open(sealed, _AAD_SEALED + id_to_bytes(ref.id))
        except SealedDataError as exc:
            raise VaultEntryUnreadable(f"vault entry {ref} does not open: {exc.message}") from None

    def _check_fingerprint_key(self, conn: sa.Connection) -> None:
        """Refuse to fingerprint under a key other than the one the rows were made with."""
        if self._key_checked:
            return
        check = fingerprints.key_check(self._keyring)
        stored = conn.execute(
            sa.select(vault_meta.c.fingerprint_key_check).where(vault_meta.c.id == _META_ID)
        ).scalar_one_or_none()
        if stored is None:
            conn.execute(sa.insert(vault_meta).values(id=_META_ID, fingerprint_key_check=check))
        elif bytes(stored) != check:
            raise VaultKeyMismatch(
                "the key ring's fingerprint key is not the vault's: its oldest key was "
                "removed or replaced; load the original oldest key"
            )


#: Built once: every tap reveals its card.
_SEALED_BY_ID: Final = sa.select(vault_pans.c.sealed).where(
    vault_pans.c.id == sa.bindparam("the_ref")
)
