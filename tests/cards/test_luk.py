"""Limited-use keys: the phone gets a LUK, not the token's master key; each LUK goes for a
bounded number of cryptograms and time, is replenished online, and the token service
refuses a cryptogram from an exhausted, expired or retired one.

"HCE wallets hold a token and limited-use keys (LUK) bounded by transaction count and
time, replenished online" (Google Pay merchant help; Visa cloud-based payments patent
US20150180836A1). The phone's side is `emv.crypto.generate_ac` with the granted key and
profile, as the applet computes it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st
from pyemv import tools

from milletpay.banks import banks as bank_data
from milletpay.banks.keys import issuer_bins
from milletpay.cards import Party, ProvisionOutcome, Token, TokenUnknown
from milletpay.cards.luk import (
    ATC_MAX,
    DEFAULT_LUK_LIMITS,
    LUK_INDEX_FIRST,
    LUK_INDEX_MAX,
    LimitedUseKeys,
    LukAtcSpaceExhausted,
    LukCode,
    LukGrant,
    LukGrantsExceeded,
    LukLimits,
    LukUnknown,
    TokenNotActive,
    Verdict,
    derive_luk,
    token_valid_until_ns,
)
from milletpay.cards.luk_tables import token_luk_atcs, token_luks
from milletpay.core.clock import NS_PER_S
from milletpay.emv import crypto
from milletpay.emv.crypto import EmvCryptoError
from milletpay.emv.keys import IssuerKeyStore, KeyKind, owner_of
from milletpay.emv.profiles import profile
from milletpay.ledger.committer import GroupCommitter
from milletpay.store.engine import EngineTransactions

from .conftest import OTHER_PHONE, TspWorld

LIMITS = LukLimits(uses_max=3, ttl_s=3_600, atc_window=5)
#: PBOC-style issuer application data: the CVR bytes the cvn01 profile takes.
IAD = bytes.fromhex("07010103A00000")


def tx(atc: int, amount_fen: int = 4_000) -> dict[str, bytes]:
    """A tap's data elements (the minimum data set and 9F10), at ATC `atc`."""
    return {
        "9F02": amount_fen.to_bytes(6, "big"),
        "9F03": bytes(6),
        "9F1A": bytes.fromhex("0156"),
        "95": bytes.fromhex("8000048000"),
        "5F2A": bytes.fromhex("0156"),
        "9A": bytes.fromhex("261126"),
        "9C": b"\x00",
        "9F37": bytes.fromhex("52BF4585"),
        "82": bytes.fromhex("1800"),
        "9F36": atc.to_bytes(2, "big"),
        "9F10": IAD,
    }


def arqc(grant: LukGrant, data: dict[str, bytes]) -> bytes:
    """The phone applet's cryptogram under the LUK it was granted."""
    return crypto.generate_ac(profile(grant.profile), grant.key, data)


@dataclass
class LukWorld:
    tsp: TspWorld
    store: IssuerKeyStore
    luks: LimitedUseKeys

    def token(self) -> Token:
        return self.tsp.active_token(self.tsp.card("ICBC"))

    def tap(self, token: Token, grant: LukGrant, atc: int) -> Verdict:
        data = tx(atc)
        return self.luks.verify(token, arqc(grant, data), data)


@pytest.fixture
def world(tsp_world: TspWorld) -> Iterator[LukWorld]:
    store = IssuerKeyStore.generate(issuer_bins())
    yield LukWorld(tsp_world, store, LimitedUseKeys(tsp_world.engine, store, tsp_world.clock))


@pytest.fixture
def small(tsp_world: TspWorld) -> Iterator[LukWorld]:
    """LUKs of `LIMITS`: 3 uses, ATCs in a window of 5, an hour."""
    store = IssuerKeyStore.generate(issuer_bins())
    luks = LimitedUseKeys(tsp_world.engine, store, tsp_world.clock, limits=LIMITS)
    yield LukWorld(tsp_world, store, luks)


# -- issuing and verifying ------------------------------------------------------------


def test_a_cryptogram_made_with_the_granted_luk_verifies(world: LukWorld) -> None:
    token = world.token()
    grant = world.luks.issue(token)
    assert (grant.luk_index, grant.atc_first, grant.atc_last) == (1, 1, 20)
    assert grant.uses_max == DEFAULT_LUK_LIMITS.uses_max == 10
    assert grant.expires_at_ns - grant.issued_at_ns == 3 * 86_400 * NS_PER_S
    assert world.tap(token, grant, grant.atc_first) == Verdict(LukCode.OK, 1, 9)
    assert world.tap(token, grant, 7) == Verdict(LukCode.OK, 1, 8)  # ATCs may skip


def test_the_phone_never_gets_the_tokens_master_key(world: LukWorld) -> None:
    token = world.token()
    grant = world.luks.issue(token)
    imk = world.store.imk_ac("ICBC", token.number[:6]).key
    icc_mk = crypto.icc_master_key(profile(grant.profile), imk, token.number, "01")
    assert grant.key not in (icc_mk, imk)
    # A cryptogram made under the master key itself is refused.
    data = tx(1)
    forged = crypto.generate_ac(profile(grant.profile), icc_mk, data)
    assert world.luks.verify(token, forged, data).code is LukCode.ARQC_INVALID


def test_the_grant_repr_hides_the_key(world: LukWorld) -> None:
    grant = world.luks.issue(world.token())
    shown = repr(grant)
    assert grant.key.hex() not in shown.lower() and str(grant.key) not in shown
    assert grant.token_number in shown


def test_no_luk_for_a_token_that_is_not_active(world: LukWorld) -> None:
    tsp = world.tsp
    waiting = tsp.provision(tsp.card("ICBC"), phone=OTHER_PHONE)  # ID&V yellow: inactive
    assert waiting.outcome is ProvisionOutcome.STEP_UP and waiting.token is not None
    with pytest.raises(TokenNotActive, match="inactive"):
        world.luks.issue(waiting.token)
    token = world.token()
    tsp.tsp.suspend(token.id, Party.CARDHOLDER)
    with pytest.raises(TokenNotActive, match="suspended"):
        world.luks.issue(token)
    with pytest.raises(TokenUnknown):
        world.luks.issue(Token(**{**_fields(token), "id": token.id + 1}))
    assert _luk_rows(world) == 0


def test_replenishing_a_token_that_never_had_a_luk_is_refused(world: LukWorld) -> None:
    with pytest.raises(LukUnknown):
        world.luks.replenish(world.token())
    assert _luk_rows(world) == 0


# -- refusals -------------------------------------------------------------------------


def test_a_token_without_a_luk_is_refused(world: LukWorld) -> None:
    token = world.token()
    data = tx(1)
    assert world.luks.verify(token, bytes(8), data) == Verdict(LukCode.LUK_UNKNOWN)


def test_a_tampered_cryptogram_is_refused_and_counts_nothing(small: LukWorld) -> None:
    token = small.token()
    grant = small.luks.issue(token)
    data = tx(1)
    good = arqc(grant, data)
    bad = bytes([good[0] ^ 0x01]) + good[1:]
    assert small.luks.verify(token, bad, data) == Verdict(LukCode.ARQC_INVALID, 1)
    assert small.luks.verify(token, good, {**data, "9F02": (1).to_bytes(6, "big")}).code is (
        LukCode.ARQC_INVALID
    )
    # The ATC was not spent: the phone's real cryptogram still verifies.
    assert small.luks.verify(token, good, data) == Verdict(LukCode.OK, 1, 2)


def test_a_cryptogram_made_with_another_tokens_luk_is_refused(world: LukWorld) -> None:
    mine, theirs = world.token(), world.token()
    world.luks.issue(mine)
    their_grant = world.luks.issue(theirs)
    data = tx(1)
    assert world.luks.verify(mine, arqc(their_grant, data), data).code is LukCode.ARQC_INVALID
    assert world.luks.verify(theirs, arqc(their_grant, data), data).ok


def test_an_atc_used_before_is_refused(small: LukWorld) -> None:
    token = small.token()
    grant = small.luks.issue(token)
    data = tx(2)
    cryptogram = arqc(grant, data)
    assert small.luks.verify(token, cryptogram, data).ok
    assert small.luks.verify(token, cryptogram, data) == Verdict(LukCode.ATC_REPLAYED, 1)
    # A new cryptogram over other data at the same ATC is a replay too.
    other = tx(2, amount_fen=99)
    assert small.luks.verify(token, arqc(grant, other), other).code is LukCode.ATC_REPLAYED


@pytest.mark.parametrize("atc", [0, LIMITS.atc_window + 1, 0xFFFF])
def test_an_atc_outside_the_window_is_refused(small: LukWorld, atc: int) -> None:
    token = small.token()
    grant = small.luks.issue(token)
    assert small.tap(token, grant, atc) == Verdict(LukCode.ATC_OUTSIDE_WINDOW)


def test_the_window_edges_are_accepted(small: LukWorld) -> None:
    token = small.token()
    grant = small.luks.issue(token)
    assert (grant.atc_first, grant.atc_last) == (1, LIMITS.atc_window)
    assert small.tap(token, grant, grant.atc_first).ok
    assert small.tap(token, grant, grant.atc_last).ok


def test_a_luk_is_exhausted_after_its_uses(small: LukWorld) -> None:
    token = small.token()
    grant = small.luks.issue(token)
    verdicts = [small.tap(token, grant, atc) for atc in range(1, LIMITS.atc_window + 1)]
    assert [v.code for v in verdicts] == [LukCode.OK] * 3 + [LukCode.LUK_EXHAUSTED] * 2
    assert [v.uses_left for v in verdicts[:3]] == [2, 1, 0]
    assert _used_count(small, token, 1) == LIMITS.uses_max


def test_a_luk_expires(small: LukWorld) -> None:
    token = small.token()
    grant = small.luks.issue(token)
    clock = small.tsp.clock
    clock.advance(nanoseconds=grant.expires_at_ns - clock.now_ns() - 1)
    assert small.tap(token, grant, 1).ok  # the last nanosecond
    clock.advance(nanoseconds=1)
    assert small.tap(token, grant, 2) == Verdict(LukCode.LUK_EXPIRED, 1)


def test_a_luk_never_outlives_its_token(tsp_world: TspWorld) -> None:
    store = IssuerKeyStore.generate(issuer_bins())
    long_lived = LukLimits(ttl_s=10 * 365 * 86_400)  # far past the token's 3 years
    luks = LimitedUseKeys(tsp_world.engine, store, tsp_world.clock, limits=long_lived)
    token = tsp_world.active_token(tsp_world.card("ICBC"))
    grant = luks.issue(token)
    ends_ns = token_valid_until_ns(f"{token.expiry.year:04d}{token.expiry.month:02d}")
    assert grant.expires_at_ns == ends_ns
    # The end of the expiry month, China time: 16:00 UTC on its last day.
    assert ends_ns % (86_400 * NS_PER_S) == 16 * 3_600 * NS_PER_S


def test_no_luk_for_a_token_past_its_expiry(world: LukWorld) -> None:
    token = world.token()
    clock = world.tsp.clock
    ends_ns = token_valid_until_ns(f"{token.expiry.year:04d}{token.expiry.month:02d}")
    clock.advance(nanoseconds=ends_ns - clock.now_ns())
    with pytest.raises(TokenNotActive, match="expired"):
        world.luks.issue(token)
    assert _luk_rows(world) == 0


def test_a_token_gets_a_bounded_number_of_luks_a_day(tsp_world: TspWorld) -> None:
    store = IssuerKeyStore.generate(issuer_bins())
    limits = LukLimits(grants_per_day_max=3)
    luks = LimitedUseKeys(tsp_world.engine, store, tsp_world.clock, limits=limits)
    token = tsp_world.active_token(tsp_world.card("ICBC"))
    grants = [luks.issue(token), luks.replenish(token), luks.replenish(token)]
    with pytest.raises(LukGrantsExceeded, match="3 limited-use keys in 24 hours"):
        luks.replenish(token)
    assert _tap_ok(luks, token, grants[-1])  # refused, and the current LUK still works
    tsp_world.clock.advance(seconds=86_400 - 1)
    with pytest.raises(LukGrantsExceeded):
        luks.issue(token)
    tsp_world.clock.advance(seconds=1)  # the first grant leaves the 24 hours
    assert luks.replenish(token).luk_index == 4


@pytest.mark.parametrize("party", [Party.CARDHOLDER, Party.ISSUER, Party.DEVICE])
def test_a_suspended_or_deleted_token_is_refused(small: LukWorld, party: Party) -> None:
    token = small.token()
    grant = small.luks.issue(token)
    small.tsp.tsp.suspend(token.id, party)
    assert small.tap(token, grant, 1).code is LukCode.TOKEN_NOT_ACTIVE
    small.tsp.tsp.resume(token.id, party)
    assert small.tap(token, grant, 1).ok
    small.tsp.tsp.delete(token.id, party)
    assert small.tap(token, grant, 2).code is LukCode.TOKEN_NOT_ACTIVE


def test_data_without_an_atc_is_an_error(small: LukWorld) -> None:
    token = small.token()
    small.luks.issue(token)
    data = tx(1)
    del data["9F36"]
    with pytest.raises(EmvCryptoError, match="9F36"):
        small.luks.verify(token, bytes(8), data)
    with pytest.raises(EmvCryptoError, match="9F36"):
        small.luks.verify(token, bytes(8), {**tx(1), "9F36": b"\x01"})


# -- replenishment --------------------------------------------------------------------


def test_replenishing_retires_the_old_luk(small: LukWorld) -> None:
    token = small.token()
    old = small.luks.issue(token)
    assert small.tap(token, old, 1).ok
    new = small.luks.replenish(token)
    assert new.luk_index == 2 and new.key != old.key
    assert (new.atc_first, new.atc_last) == (old.atc_last + 1, old.atc_last + LIMITS.atc_window)
    assert small.tap(token, old, 2) == Verdict(LukCode.LUK_RETIRED, 1)
    assert small.tap(token, new, new.atc_first) == Verdict(LukCode.OK, 2, 2)
    # The old window's ATCs used under the new key are outside its window.
    assert small.tap(token, new, old.atc_last).code is LukCode.LUK_RETIRED
    # The retired LUK's spent ATCs are forgotten: only the current LUK's are kept.
    with small.tsp.engine.connect() as conn:
        kept = conn.execute(sa.select(token_luk_atcs.c.luk_index)).scalars().all()
    assert kept == [2]


def test_an_exhausted_or_expired_luk_is_replaced_by_replenishing(small: LukWorld) -> None:
    token = small.token()
    grant = small.luks.issue(token)
    for atc in range(1, 4):
        assert small.tap(token, grant, atc).ok
    grant = small.luks.replenish(token)
    assert small.tap(token, grant, grant.atc_first).ok
    small.tsp.clock.advance(seconds=LIMITS.ttl_s)
    assert small.tap(token, grant, grant.atc_first + 1).code is LukCode.LUK_EXPIRED
    grant = small.luks.replenish(token)
    assert small.tap(token, grant, grant.atc_first).ok


def test_issuing_again_retires_the_current_luk(small: LukWorld) -> None:
    token = small.token()
    first = small.luks.issue(token)
    second = small.luks.issue(token)
    assert second.luk_index == 2
    assert small.tap(token, first, 1).code is LukCode.LUK_RETIRED
    with small.tsp.engine.connect() as conn:
        current = conn.execute(
            sa.select(token_luks.c.luk_index).where(token_luks.c.retired_at.is_(None))
        ).scalars()
        assert list(current) == [2]


def test_the_atc_space_runs_out(tsp_world: TspWorld) -> None:
    store = IssuerKeyStore.generate(issuer_bins())
    wide = LukLimits(uses_max=10, ttl_s=60, atc_window=30_000)
    luks = LimitedUseKeys(tsp_world.engine, store, tsp_world.clock, limits=wide)
    token = tsp_world.active_token(tsp_world.card("ICBC"))
    luks.issue(token)
    last = luks.replenish(token)
    assert last.atc_last == 60_000
    with pytest.raises(LukAtcSpaceExhausted):
        luks.replenish(token)
    assert _tap_ok(luks, token, last)  # nothing changed: the LUK in hand still works


def _tap_ok(luks: LimitedUseKeys, token: Token, grant: LukGrant) -> bool:
    data = tx(grant.atc_first)
    return luks.verify(token, arqc(grant, data), data).ok


def test_a_rotated_imk_keeps_issued_luks_working(tsp_world: TspWorld) -> None:
    store = IssuerKeyStore.generate(issuer_bins())
    token = tsp_world.active_token(tsp_world.card("ICBC"))
    grant = LimitedUseKeys(tsp_world.engine, store, tsp_world.clock).issue(token)
    rotated = store.rotated(KeyKind.IMK_AC, owner_of(KeyKind.IMK_AC, "ICBC", token.number[:6]))
    luks = LimitedUseKeys(tsp_world.engine, rotated, tsp_world.clock)
    assert _tap_ok(luks, token, grant)  # derived again under IMK version 1
    newer = luks.replenish(token)
    assert newer.key != derive_luk(_icc_mk(rotated, token, 1), newer.luk_index)
    assert newer.key == derive_luk(_icc_mk(rotated, token, 2), newer.luk_index)


# -- concurrency ----------------------------------------------------------------------


def test_concurrent_verifications_of_one_atc_count_once(small: LukWorld) -> None:
    token = small.token()
    grant = small.luks.issue(token)
    data = tx(3)
    cryptogram = arqc(grant, data)
    threads = 8
    barrier = threading.Barrier(threads)

    def verify(_: int) -> Verdict:
        barrier.wait()
        return small.luks.verify(token, cryptogram, data)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        codes = sorted(v.code for v in pool.map(verify, range(threads)))
    assert codes == sorted([LukCode.OK] + [LukCode.ATC_REPLAYED] * (threads - 1))
    assert _used_count(small, token, 1) == 1


def test_concurrent_verifications_never_exceed_the_uses(small: LukWorld) -> None:
    token = small.token()
    grant = small.luks.issue(token)
    atcs = range(grant.atc_first, grant.atc_last + 1)
    barrier = threading.Barrier(len(atcs))

    def tap(atc: int) -> Verdict:
        barrier.wait()
        return small.tap(token, grant, atc)

    with ThreadPoolExecutor(max_workers=len(atcs)) as pool:
        codes = [v.code for v in pool.map(tap, atcs)]
    assert codes.count(LukCode.OK) == LIMITS.uses_max
    assert set(codes) == {LukCode.OK, LukCode.LUK_EXHAUSTED}
    assert _used_count(small, token, 1) == LIMITS.uses_max


def test_concurrent_replenishments_leave_one_current_luk(small: LukWorld) -> None:
    token = small.token()
    small.luks.issue(token)
    threads = 4
    barrier = threading.Barrier(threads)

    def replenish(_: int) -> LukGrant | str:
        barrier.wait()
        try:
            return small.luks.replenish(token)
        except Exception as exc:  # TokenBusy is allowed; nothing else
            return getattr(exc, "code", repr(exc))

    with ThreadPoolExecutor(max_workers=threads) as pool:
        results = list(pool.map(replenish, range(threads)))
    grants = [r for r in results if isinstance(r, LukGrant)]
    assert grants and all(r == "token_busy" for r in results if not isinstance(r, LukGrant))
    newest = max(grants, key=lambda g: g.luk_index)
    assert len({g.luk_index for g in grants}) == len(grants)
    assert small.tap(token, newest, newest.atc_first).ok
    with small.tsp.engine.connect() as conn:
        current = conn.execute(
            sa.select(token_luks.c.luk_index).where(token_luks.c.retired_at.is_(None))
        ).scalars()
        assert list(current) == [newest.luk_index]


# -- the derivation -------------------------------------------------------------------


def test_the_luk_derivation_is_the_documented_one() -> None:
    """EMV Book 2 A1.4.1 option A for the ICC MK, then the common session key method
    (A1.3.1) with R = "LK" 00 00 || index, written out with TDES-ECB and parity."""
    imk = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    pan, psn = "12345678901234567", "01"
    y = bytes.fromhex((pan + psn)[-16:])
    icc_mk = tools.adjust_key_parity(tools.encrypt_tdes_ecb(imk, y + tools.xor(y, b"\xff" * 8)))
    # pyemv/kd.py doctest: the known ICC MK of this IMK, PAN and PSN.
    assert icc_mk.hex().upper() == "73AD54688CEF2934B0979857E3C719F1"
    index = 0x0102
    left = bytes.fromhex("4C4BF000") + index.to_bytes(4, "big")
    right = bytes.fromhex("4C4B0F00") + index.to_bytes(4, "big")
    expected = tools.adjust_key_parity(tools.encrypt_tdes_ecb(icc_mk, left + right))
    assert derive_luk(icc_mk, index) == expected
    assert expected.hex().upper() == EXPECTED_LUK_0102
    assert derive_luk(icc_mk, index + 1) != expected


@given(st.integers(LUK_INDEX_FIRST, LUK_INDEX_MAX), st.integers(0, ATC_MAX))
def test_a_luk_is_a_des_key_apart_from_every_atc_session_key(index: int, atc: int) -> None:
    icc_mk = bytes.fromhex("73AD54688CEF2934B0979857E3C719F1")
    luk = derive_luk(icc_mk, index)
    assert len(luk) == 16 and all(bin(b).count("1") % 2 == 1 for b in luk)  # odd parity
    assert luk != crypto.common_session_key(icc_mk, atc.to_bytes(2, "big"))
    assert luk != derive_luk(icc_mk, index % LUK_INDEX_MAX + 1)


def test_the_granted_luk_is_derived_from_the_tokens_imk(world: LukWorld) -> None:
    token = world.token()
    grant = world.luks.issue(token)
    assert grant.key == derive_luk(_icc_mk(world.store, token, 1), 1)


def test_the_key_store_keys_every_token_iin() -> None:
    bins = set(issuer_bins())
    assert ("ICBC", "628800") in bins
    for spec in bank_data():
        assert (spec.code, spec.token_iin_range.first) in bins
        assert (spec.code, spec.token_iin_range.last) in bins


# -- helpers --------------------------------------------------------------------------

#: Pinned: the value the steps above give (checked once with `openssl enc -des-ede -K`).
EXPECTED_LUK_0102 = "EAC7403DD3C26BC410F72CA1587ABC79"


def _icc_mk(store: IssuerKeyStore, token: Token, version: int) -> bytes:
    imk = store.imk_ac(token.bank_code, token.number[:6], version).key
    return crypto.icc_master_key(profile("unionpay-cvn01"), imk, token.number, "01")


def _fields(token: Token) -> dict[str, object]:
    return {name: getattr(token, name) for name in token.__dataclass_fields__}


def _luk_rows(world: LukWorld) -> int:
    with world.tsp.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(token_luks)).scalar_one())


def _used_count(world: LukWorld, token: Token, luk_index: int) -> int:
    with world.tsp.engine.connect() as conn:
        used = conn.execute(
            sa.select(token_luks.c.used_count).where(
                token_luks.c.token_id == token.id.to_bytes(16, "big"),
                token_luks.c.luk_index == luk_index,
            )
        )
        return int(used.scalar_one())


# -- uses counted through a group committer ---------------------------------------------


def test_group_committed_uses_spend_each_atc_once(tsp_world: TspWorld) -> None:
    """The switch counts LUK uses through a group committer: many verifications share
    one transaction, and of several verifications of one ATC in it, one wins."""
    store = IssuerKeyStore.generate(issuer_bins())
    committer = GroupCommitter(EngineTransactions(tsp_world.engine))
    limits = LukLimits(uses_max=50, atc_window=50, ttl_s=3_600)
    luks = LimitedUseKeys(
        tsp_world.engine, store, tsp_world.clock, limits=limits, committer=committer
    )
    try:
        token = tsp_world.active_token(tsp_world.card("ICBC"))
        grant = luks.issue(token)
        same = tx(3)
        cryptogram = arqc(grant, same)
        distinct = [tx(atc) for atc in range(10, 20)]
        with ThreadPoolExecutor(8) as pool:
            replays = list(pool.map(lambda _: luks.verify(token, cryptogram, same), range(8)))
            others = list(
                pool.map(lambda data: luks.verify(token, arqc(grant, data), data), distinct)
            )
        # Eleven uses counted: the next one leaves 50 - 12.
        assert luks.verify(token, arqc(grant, tx(30)), tx(30)) == Verdict(LukCode.OK, 1, 38)
    finally:
        committer.close()
    assert sorted(v.code for v in replays) == [LukCode.ATC_REPLAYED] * 7 + [LukCode.OK]
    assert all(v.ok for v in others)
