"""Limited-use keys (LUKs): the keys a phone makes its tap-to-pay cryptograms with.

The token's ICC master key (EMV 4.3 Book 2 Annex A1.4, from the issuer's IMK-AC for the
token's IIN, the token number and its PSN) never leaves the token service. The phone is
handed a LUK derived from it for one LUK index (`derive_luk`), valid for at most
`LukLimits.uses_max` cryptograms, with ATCs in its own window, until it expires; it asks
online for the next one (`replenish`), which retires the one before. The token service
never stores a LUK: it derives it again from (token, index, IMK version) to check a
cryptogram, and refuses one from an unknown, retired, expired or exhausted LUK, an ATC
outside the window or used before, or a token that is not active, with a stable code.

Nothing here logs or stores a key; the phone's `LukGrant` is the one place a LUK is
returned, and its repr hides it.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Final

import sqlalchemy as sa
from pyemv import kd as _kd

from milletpay.cards.errors import CardError, TokenBusy, TokenUnknown
from milletpay.cards.lifecycle import TokenState
from milletpay.cards.luk_tables import token_luk_atcs, token_luks
from milletpay.cards.tables import tokens
from milletpay.cards.tokens import Token
from milletpay.core.clock import NS_PER_S, Clock
from milletpay.core.ids import id_from_bytes, id_to_bytes
from milletpay.emv import crypto
from milletpay.emv.crypto import EmvCryptoError
from milletpay.emv.keys import ImkSource
from milletpay.emv.profiles import CryptogramProfile, profile
from milletpay.identity.kyc import SECONDS_PER_DAY
from milletpay.ledger.committer import GroupCommitter, RowWriter, settled
from milletpay.store.engine import ConnectionTransaction, read_transaction, write_transaction
from milletpay.store.sql import Sql
from milletpay.wallet.periods import month_bounds_ns

#: The cryptogram profile of the phone's applet: Millet Pay's network profile.
LUK_PROFILE: Final = profile("unionpay-cvn01")
#: R for the LUK's common session key derivation: "LK", 00 00, then the 4-byte index.
LUK_R_LABEL: Final = b"LK\x00\x00"
LUK_INDEX_FIRST: Final = 1
LUK_INDEX_MAX: Final = 0xFFFF_FFFF  # 4 bytes of R (the ATC space runs out long before)
#: The phone's first ATC; 0 is the counter before any transaction.
ATC_FIRST: Final = 1
ATC_MAX: Final = 0xFFFF  # tag 9F36, 2 bytes
ATC_BYTES: Final = 2
TOKEN_IIN_DIGITS: Final = 6
#: Tries of an issue or replenishment that lost to a concurrent one.
LUK_WRITE_ATTEMPTS_MAX: Final = 3

#: Derived LUKs kept in memory by one `LimitedUseKeys`, the most recently used.
LUK_KEYS_KEPT: Final = 10_000

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LukLimits:
    """How far one LUK goes. The ATC window is wider than the uses: the phone's ATC
    moves on every tap, also on taps that never reach the token service."""

    uses_max: int = 10
    ttl_s: int = 3 * 86_400
    atc_window: int = 20
    #: LUKs one token may be given in any 24 hours (replenishments included).
    grants_per_day_max: int = 24

    def __post_init__(self) -> None:
        assert 1 <= self.uses_max <= self.atc_window <= ATC_MAX - ATC_FIRST + 1
        assert self.ttl_s >= 1
        assert self.grants_per_day_max >= 1


DEFAULT_LUK_LIMITS: Final = LukLimits()


class LukCode(enum.StrEnum):
    """A verification's answer; stable codes."""

    OK = "ok"
    TOKEN_NOT_ACTIVE = "token_not_active"  # unknown, inactive, suspended or deleted
    LUK_UNKNOWN = "luk_unknown"  # the token was never given a LUK
    ATC_OUTSIDE_WINDOW = "atc_outside_window"  # in no issued LUK's window
    LUK_RETIRED = "luk_retired"  # the ATC's LUK was replaced by a newer one
    LUK_EXPIRED = "luk_expired"
    LUK_EXHAUSTED = "luk_exhausted"  # `uses_max` cryptograms verified already
    ATC_REPLAYED = "atc_replayed"  # a cryptogram with this ATC verified before
    ARQC_INVALID = "arqc_invalid"


class TokenNotActive(CardError):
    """A LUK asked for a token that is not active: no key is issued."""

    code = "token_not_active"


class LukUnknown(CardError):
    """A replenishment for a token that was never given a LUK."""

    code = "luk_unknown"


class LukGrantsExceeded(CardError):
    """The token was given `LukLimits.grants_per_day_max` LUKs in the last 24 hours: a
    phone asking again and again would otherwise burn the token's ATC space."""

    code = "luk_grants_exceeded"


class LukAtcSpaceExhausted(CardError):
    """The token's ATCs (2 bytes) are all used by earlier LUKs: it must be provisioned
    again."""

    code = "luk_atc_space_exhausted"


@dataclass(frozen=True, slots=True, repr=False)
class LukGrant:
    """What the phone gets: the key, and how far it goes. Its repr hides the key."""

    token_id: int
    token_number: str
    luk_index: int
    key: bytes
    profile: str  # the cryptogram profile to compute ARQCs with (`emv.profiles`)
    atc_first: int
    atc_last: int
    uses_max: int
    issued_at_ns: int
    expires_at_ns: int

    def __repr__(self) -> str:
        return (
            f"LukGrant(token={self.token_number}, luk_index={self.luk_index}, "
            f"atc={self.atc_first}..{self.atc_last}, uses_max={self.uses_max}, "
            f"expires_at_ns={self.expires_at_ns})"
        )


@dataclass(frozen=True, slots=True)
class Verdict:
    code: LukCode
    luk_index: int = 0  # the LUK the ATC belongs to; 0 if none
    uses_left: int = 0  # after this one, for `OK`

    @property
    def ok(self) -> bool:
        return self.code is LukCode.OK


def derive_luk(icc_mk: bytes, luk_index: int) -> bytes:
    """LUK number `luk_index` of a token: the EMV common session key (Book 2, A1.3.1) of
    its ICC master key with R = 4C 4B 00 00 || index (4 bytes, big-endian), that is
    TDES(ICC MK)[4C 4B F0 00 || index] || TDES(ICC MK)[4C 4B 0F 00 || index], with odd
    parity. The "LK" prefix keeps R apart from an ATC session key's (ATC || 00 ... 00)."""
    assert LUK_INDEX_FIRST <= luk_index <= LUK_INDEX_MAX
    return _kd.derive_common_sk(icc_mk, LUK_R_LABEL + luk_index.to_bytes(4, "big"))


@dataclass(frozen=True, slots=True)
class _Use:
    """A cryptogram that passed every check but its use's count: the write to make."""

    token: Token
    atc: int
    luk: Any
    luk_key: bytes = field(repr=False)
    unit: Callable[[sa.Connection], Verdict] = field(repr=False)


class LimitedUseKeys:
    """Issues, replenishes and checks a token's LUKs; thread-safe."""

    def __init__(
        self,
        engine: sa.Engine,
        key_store: ImkSource,
        clock: Clock,
        *,
        limits: LukLimits = DEFAULT_LUK_LIMITS,
        committer: GroupCommitter[ConnectionTransaction] | None = None,
    ) -> None:
        """`committer`: the uses `verify` counts are written through it, many
        verifications' in one transaction (its owner closes it); None: each in its own."""
        self._engine = engine
        self._writer = RowWriter(engine, committer)
        self._luk_keys: OrderedDict[tuple[str, str, int, int, int], bytes] = OrderedDict()
        self._luk_keys_lock = threading.Lock()
        #: (token id, ATC) → LUK of the cryptograms verified last, for their ARPCs.
        self._verified: OrderedDict[tuple[int, int], bytes] = OrderedDict()
        self._key_store = key_store
        self._clock = clock
        self._limits = limits
        self._profile: CryptogramProfile = LUK_PROFILE

    # -- issuing ---------------------------------------------------------------------

    def issue(self, token: Token) -> LukGrant:
        """The phone's next LUK; a current one is retired (as `replenish` does).
        `TokenUnknown`, `TokenNotActive` (also once the token expired),
        `LukGrantsExceeded`, `LukAtcSpaceExhausted`; nothing changes then."""
        return self._next(token, replenishing=False)

    def replenish(self, token: Token) -> LukGrant:
        """A new LUK for a token that has had one; the one before is retired at once and
        its cryptograms refused from now on (`luk_retired`). `LukUnknown` if the token
        never had one, and the errors of `issue`."""
        return self._next(token, replenishing=True)

    def _next(self, token: Token, *, replenishing: bool) -> LukGrant:
        key = id_to_bytes(token.id)
        imk_version = self._imk(token.bank_code, token.number).version
        for _ in range(LUK_WRITE_ATTEMPTS_MAX):
            try:
                written = self._write_next(key, token, imk_version, replenishing)
            except sa.exc.IntegrityError:  # a concurrent issue took the index first
                continue
            if written is not None:
                row, values = written
                log.info("token %s: LUK %d issued", row.token_number, values["luk_index"])
                return self._grant(row, values)
        raise TokenBusy(f"token {token.number} got LUKs concurrently; try again")

    def _write_next(
        self, key: bytes, token: Token, imk_version: int, replenishing: bool
    ) -> tuple[Any, dict[str, Any]] | None:
        """Retire the current LUK and write the next; None if a concurrent issue retired
        it first (nothing written)."""
        with write_transaction(self._engine) as conn:
            row = _token_row(conn, key)
            if row is None:
                raise TokenUnknown(f"no token {token.id:032x}")
            if row.state != TokenState.ACTIVE:
                raise TokenNotActive(f"token {row.token_number} is {row.state}")
            latest = _latest_luk(conn, key)
            if latest is None and replenishing:
                raise LukUnknown(f"token {row.token_number} has no LUK to replenish")
            self._check_grant_rate(conn, key, row.token_number)
            values = self._luk_row(key, latest, imk_version, row)
            if latest is not None and not _retire(conn, latest, values["issued_at"]):
                conn.rollback()
                return None
            conn.execute(sa.insert(token_luks).values(values))
        return row, values

    def _check_grant_rate(self, conn: sa.Connection, key: bytes, token_number: str) -> None:
        since_ns = self._clock.now_ns() - SECONDS_PER_DAY * NS_PER_S
        recent = conn.execute(
            sa.select(sa.func.count())
            .select_from(token_luks)
            .where(token_luks.c.token_id == key, token_luks.c.issued_at > since_ns)
        ).scalar_one()
        if recent >= self._limits.grants_per_day_max:
            raise LukGrantsExceeded(
                f"token {token_number} was given {recent} limited-use keys in 24 hours, "
                f"the most there may be is {self._limits.grants_per_day_max}"
            )

    def _luk_row(self, key: bytes, latest: Any, imk_version: int, token_row: Any) -> dict[str, Any]:
        """The next LUK's row: the window after the latest's, valid for `ttl_s` but never
        past the token's own expiry."""
        index = LUK_INDEX_FIRST if latest is None else latest.luk_index + 1
        atc_first = ATC_FIRST if latest is None else latest.atc_last + 1
        atc_last = atc_first + self._limits.atc_window - 1
        if atc_last > ATC_MAX:
            raise LukAtcSpaceExhausted(f"token {token_row.token_number} has used its ATCs up")
        now_ns = self._clock.now_ns()
        token_ends_ns = token_valid_until_ns(token_row.expiry)
        if now_ns >= token_ends_ns:
            raise TokenNotActive(f"token {token_row.token_number} has expired")
        return {
            "token_id": key,
            "luk_index": index,
            "imk_version": imk_version,
            "atc_first": atc_first,
            "atc_last": atc_last,
            "uses_max": self._limits.uses_max,
            "used_count": 0,
            "issued_at": now_ns,
            "expires_at": min(now_ns + self._limits.ttl_s * NS_PER_S, token_ends_ns),
            "retired_at": None,
        }

    def _grant(self, row: Any, values: Mapping[str, Any]) -> LukGrant:
        luk = self._luk(row.bank_code, row.token_number, row.psn, values)
        return LukGrant(
            token_id=id_from_bytes(row.id),
            token_number=row.token_number,
            luk_index=values["luk_index"],
            key=luk,
            profile=self._profile.name,
            atc_first=values["atc_first"],
            atc_last=values["atc_last"],
            uses_max=values["uses_max"],
            issued_at_ns=values["issued_at"],
            expires_at_ns=values["expires_at"],
        )

    # -- verifying -------------------------------------------------------------------

    def verify(self, token: Token, arqc: bytes, data: Mapping[str, bytes]) -> Verdict:
        """Whether `arqc` is the phone's cryptogram over `data` (EMV tags, 9F36 the ATC)
        under the LUK whose window holds the ATC, and that LUK may still be used; an `OK`
        counts one use of the LUK and spends the ATC, atomically (of two verifications of
        one ATC, one wins). `EmvCryptoError` if `data` lacks a tag or one is malformed."""
        checked = self._check(token, arqc, data)
        if isinstance(checked, Verdict):
            return checked
        return self._counted(checked, self._writer.submit(checked.unit))

    async def verify_async(self, token: Token, arqc: bytes, data: Mapping[str, bytes]) -> Verdict:
        """`verify`, its use counted while the event loop waits instead of a thread (its
        read and the cryptogram's check run on the loop)."""
        checked = self._check(token, arqc, data)
        if isinstance(checked, Verdict):
            return checked
        return self._counted(checked, await settled(self._writer.submit(checked.unit)))

    def _check(self, token: Token, arqc: bytes, data: Mapping[str, bytes]) -> Verdict | _Use:
        """A refusal, or the use to count: every check of `verify` but the last, which
        only the write can make (the LUK and the ATC still free when it is counted)."""
        atc = _atc(data)
        key = id_to_bytes(token.id)
        with self._engine.connect() as conn:  # one statement: its own snapshot
            row = _VERIFY_STATE.run(conn, the_token=key, the_atc=atc).first()
        luk = None if row is None or row.luk_index is None else row
        has_luk = row is not None and bool(row.has_luk)
        seen = luk is not None and bool(row.seen)
        refusal = self._refusal(row, luk, has_luk, seen)
        if refusal is not None:
            return self._refused(token, refusal, luk, atc)
        assert luk is not None  # `_refusal` passes no token without the ATC's LUK
        luk_key = self._luk(luk.bank_code, luk.token_number, luk.psn, luk._asdict())
        if not crypto.verify_arqc(self._profile, luk_key, data, arqc):
            return self._refused(token, LukCode.ARQC_INVALID, luk, atc)
        return _Use(token, atc, luk, luk_key, self._use_unit(key, luk, atc))

    def _counted(self, use: _Use, written: Future[Verdict]) -> Verdict:
        """The verdict once `use` was counted (or refused when it came to it)."""
        try:
            verdict = written.result()
        except sa.exc.IntegrityError:  # a concurrent verification spent the ATC first
            verdict = Verdict(LukCode.ATC_REPLAYED, use.luk.luk_index)
        if not verdict.ok:
            return self._refused(use.token, verdict.code, use.luk, use.atc)
        with self._luk_keys_lock:  # the ARPC that answers it needs this LUK again
            self._verified[(use.token.id, use.atc)] = use.luk_key
            while len(self._verified) > LUK_KEYS_KEPT:
                self._verified.popitem(last=False)
        return verdict

    def _refusal(self, row: Any, luk: Any, has_luk: bool, seen: bool) -> LukCode | None:
        """The first check the token, the ATC's LUK and the ATC fail; None if all pass."""
        if row is None or row.state != TokenState.ACTIVE:
            return LukCode.TOKEN_NOT_ACTIVE
        if not has_luk:
            return LukCode.LUK_UNKNOWN
        if luk is None:
            return LukCode.ATC_OUTSIDE_WINDOW
        return self._luk_refusal(luk) or (LukCode.ATC_REPLAYED if seen else None)

    def _luk_refusal(self, luk: Any) -> LukCode | None:
        if luk.retired_at is not None:
            return LukCode.LUK_RETIRED
        if self._clock.now_ns() >= luk.expires_at:
            return LukCode.LUK_EXPIRED
        if luk.used_count >= luk.uses_max:
            return LukCode.LUK_EXHAUSTED
        return None

    def _use_unit(self, key: bytes, luk: Any, atc: int) -> Callable[[sa.Connection], Verdict]:
        """The write of one use of `luk` and the ATC spent, each compare-and-set: the LUK
        still current, unexpired, under its uses, the ATC not spent (else the unit
        raises `IntegrityError`)."""
        now_ns = self._clock.now_ns()
        where = {"the_token": key, "the_luk": luk.luk_index}

        def unit(conn: sa.Connection) -> Verdict:
            state = _TOKEN_STATE.run(conn, the_token=key).scalar_one_or_none()
            if state != TokenState.ACTIVE:
                return Verdict(LukCode.TOKEN_NOT_ACTIVE, luk.luk_index)
            used = _USE_LUK.run(conn, **where, the_time=now_ns).scalar_one_or_none()
            if used is None:  # the LUK changed since it was read: say how
                again = _LUK_ROW.run(conn, **where).one_or_none()
                assert again is not None, "a LUK is never deleted"
                code = self._luk_refusal(again)
                assert code is not None, "the LUK changed but nothing refuses it"
                return Verdict(code, luk.luk_index)
            _SPEND_ATC.run(conn, **where, the_atc=atc, the_time=now_ns)
            uses_left = luk.uses_max - used
            assert 0 <= uses_left < luk.uses_max
            return Verdict(LukCode.OK, luk.luk_index, uses_left)

        return unit

    def _refused(self, token: Token, code: LukCode, luk: Any, atc: int) -> Verdict:
        log.info("token %s: cryptogram with ATC %d refused: %s", token.number, atc, code)
        return Verdict(code, 0 if luk is None else luk.luk_index)

    # -- answering -------------------------------------------------------------------

    def arpc(self, token: Token, data: Mapping[str, bytes], arqc: bytes, arc: bytes) -> bytes:
        """The issuer's ARPC for the phone's `arqc` (profile method 1: the ARC is the
        2-byte authorization response code), under the session key of the LUK whose
        window holds the ATC (9F36) of `data`: the key the applet made the ARQC with.
        It reads the LUK whatever its use count, so an answer can follow `verify`, and
        counts nothing. `LukUnknown` if no LUK of the token holds the ATC;
        `EmvCryptoError` for a malformed tag. The LUK itself never leaves this object."""
        atc = _atc(data)
        with self._luk_keys_lock:  # the LUK of a cryptogram this object verified
            luk_key = self._verified.get((token.id, atc))
        if luk_key is None:
            key = id_to_bytes(token.id)
            with read_transaction(self._engine) as conn:
                row = _token_row(conn, key)
                luk = _luk_for_atc(conn, key, atc)
            if row is None or luk is None:
                raise LukUnknown(f"token {token.number} has no LUK for ATC {atc}")
            luk_key = self._luk(row.bank_code, row.token_number, row.psn, luk._asdict())
        return crypto.generate_arpc(self._profile, luk_key, data, arqc, arc)

    # -- keys ------------------------------------------------------------------------

    def _imk(self, bank_code: str, token_number: str, version: int | None = None) -> Any:
        return self._key_store.imk_ac(bank_code, token_number[:TOKEN_IIN_DIGITS], version)

    def _luk(self, bank_code: str, number: str, psn: int, luk: Mapping[str, Any]) -> bytes:
        """The LUK again: IMK-AC (the version it was issued under) → ICC MK → LUK. Kept
        in memory (the last `LUK_KEYS_KEPT`), as an HSM keeps a working key: a tap's
        `verify` and `arpc` derive the same one, and so do a LUK's later uses."""
        name = (bank_code, number, psn, luk["imk_version"], luk["luk_index"])
        with self._luk_keys_lock:
            kept = self._luk_keys.get(name)
            if kept is not None:
                self._luk_keys.move_to_end(name)
                return kept
        imk = self._imk(bank_code, number, luk["imk_version"]).key
        icc_mk = crypto.icc_master_key(self._profile, imk, number, f"{psn:02d}")
        derived = derive_luk(icc_mk, luk["luk_index"])
        with self._luk_keys_lock:
            self._luk_keys[name] = derived
            while len(self._luk_keys) > LUK_KEYS_KEPT:
                self._luk_keys.popitem(last=False)
        return derived


def token_valid_until_ns(expiry_yyyymm: str) -> int:
    """The first instant a token is no longer valid: the end of its expiry month (CST),
    as a card is valid through the last day of its expiry month."""
    return month_bounds_ns(int(expiry_yyyymm[:4]), int(expiry_yyyymm[4:]))[1]


def _atc(data: Mapping[str, bytes]) -> int:
    value = data.get("9F36")
    if value is None or len(value) != ATC_BYTES:
        raise EmvCryptoError(f"tag 9F36 (ATC) must be {ATC_BYTES} bytes")
    return int.from_bytes(value, "big")


#: The statements of `_count_use`, which every tap runs.
_THIS_LUK: Final = "token_id = :the_token AND luk_index = :the_luk"
_TOKEN_STATE: Final = Sql("SELECT state FROM tokens WHERE id = :the_token")
#: One use, if the LUK is still current, unexpired and under its uses: its new count.
_USE_LUK: Final = Sql(
    f"""UPDATE token_luks SET used_count = used_count + 1
    WHERE {_THIS_LUK} AND retired_at IS NULL AND expires_at > :the_time
    AND used_count < uses_max RETURNING used_count"""
)
_LUK_ROW: Final = Sql(f"SELECT * FROM token_luks WHERE {_THIS_LUK}")
_SPEND_ATC: Final = Sql(
    "INSERT INTO token_luk_atcs (token_id, atc, luk_index, used_at) "
    "VALUES (:the_token, :the_atc, :the_luk, :the_time)"
)
#: What `verify` reads, in one statement: the token, the LUK whose window holds the ATC
#: (its columns empty if none does), whether the token has any LUK, and whether the ATC
#: was spent.
_VERIFY_STATE: Final = Sql(
    """SELECT t.state, t.bank_code, t.token_number, t.psn,
        l.luk_index, l.imk_version, l.uses_max, l.used_count, l.expires_at, l.retired_at,
        EXISTS (SELECT 1 FROM token_luks k WHERE k.token_id = t.id) AS has_luk,
        EXISTS (
            SELECT 1 FROM token_luk_atcs a WHERE a.token_id = t.id AND a.atc = :the_atc
        ) AS seen
    FROM tokens t LEFT JOIN token_luks l
        ON l.token_id = t.id AND l.atc_first <= :the_atc AND l.atc_last >= :the_atc
    WHERE t.id = :the_token"""
)


#: The reads of `arpc` when it has no LUK kept from `verify`.
_TOKEN_ROW: Final = sa.select(tokens).where(tokens.c.id == sa.bindparam("the_token"))
_LUK_FOR_ATC: Final = sa.select(token_luks).where(
    token_luks.c.token_id == sa.bindparam("the_token"),
    token_luks.c.atc_first <= sa.bindparam("the_atc"),
    token_luks.c.atc_last >= sa.bindparam("the_atc"),
)


def _token_row(conn: sa.Connection, key: bytes) -> Any:
    return conn.execute(_TOKEN_ROW, {"the_token": key}).first()


def _latest_luk(conn: sa.Connection, key: bytes) -> Any:
    query = sa.select(token_luks).where(token_luks.c.token_id == key)
    return conn.execute(query.order_by(token_luks.c.luk_index.desc()).limit(1)).first()


def _luk_for_atc(conn: sa.Connection, key: bytes, atc: int) -> Any:
    return conn.execute(_LUK_FOR_ATC, {"the_token": key, "the_atc": atc}).first()


def _retire(conn: sa.Connection, latest: Any, now_ns: int) -> bool:
    """Retire the token's latest LUK if it is current, and forget its ATCs (no ATC of a
    retired window is accepted again). False if a concurrent issue retired it first."""
    if latest.retired_at is not None:
        return True
    this_luk = (
        token_luks.c.token_id == latest.token_id,
        token_luks.c.luk_index == latest.luk_index,
    )
    done = conn.execute(
        sa.update(token_luks)
        .where(*this_luk, token_luks.c.retired_at.is_(None))
        .values(retired_at=now_ns)
    )
    if done.rowcount != 1:
        return False
    conn.execute(
        sa.delete(token_luk_atcs).where(
            token_luk_atcs.c.token_id == latest.token_id,
            token_luk_atcs.c.luk_index == latest.luk_index,
        )
    )
    return True
