"""The phone's applet and the token service agree: a LUK issued by `LimitedUseKeys` is
loaded into the HCE applet, a terminal taps it, and the token service verifies the ARQC
of field 55; the next tap's ATC moves on, and a replenished LUK picks up where the
exhausted one stopped. Runs on SQLite and PostgreSQL (the token service's storage)."""

from __future__ import annotations

import datetime
import random
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from milletpay.acquiring import (
    ContactlessKernel,
    NfcField,
    OutcomeKind,
    TerminalConfig,
    Transaction,
)
from milletpay.banks.keys import issuer_bins
from milletpay.cards import Token
from milletpay.cards.luk import LimitedUseKeys, LukCode, LukGrant, LukLimits, Verdict
from milletpay.emv import tlv
from milletpay.emv.applet import UNIONPAY_AIDS, HceCard, HceLuk, PaymentApplet
from milletpay.emv.keys import IssuerKeyStore

from .conftest import TspWorld

TERMINAL = TerminalConfig(contactless_limit_minor=500_000, cvm_limit_minor=100_000)
TODAY = datetime.date(2026, 11, 26)


def hce_luk(grant: LukGrant) -> HceLuk:
    """What the wallet hands the applet from the token service's grant."""
    return HceLuk(
        key=grant.key,
        index=grant.luk_index,
        profile=grant.profile,
        atc_first=grant.atc_first,
        atc_last=grant.atc_last,
        uses_max=grant.uses_max,
        expires_at_ns=grant.expires_at_ns,
    )


def hce_card(token: Token, grant: LukGrant) -> HceCard:
    return HceCard(
        token_pan=grant.token_number,
        expiry_yymm=f"{token.expiry.year % 100:02d}{token.expiry.month:02d}",
        psn=token.psn,
        aid=UNIONPAY_AIDS["debit"],
        label="ICBC Debit",
        priority=1,
        luk=hce_luk(grant),
    )


@dataclass
class Wallet:
    tsp: TspWorld
    luks: LimitedUseKeys
    kernel: ContactlessKernel

    def tap(self, applet: PaymentApplet, amount_fen: int = 4_000) -> dict[str, bytes]:
        """One tap; field 55 of the online request, as the issuer side decodes it."""
        with NfcField(applet) as field:
            outcome = self.kernel.tap(field, Transaction(amount_fen, TODAY))
        assert outcome.kind is OutcomeKind.ONLINE_REQUEST, outcome.reason
        assert outcome.authorization is not None
        return tlv.primitives(tlv.decode(outcome.authorization.icc_data))

    def verify(self, token: Token, icc: dict[str, bytes]) -> Verdict:
        return self.luks.verify(token, icc["9F26"], icc)


@pytest.fixture
def wallet(tsp_world: TspWorld) -> Iterator[Wallet]:
    store = IssuerKeyStore.generate(issuer_bins())
    luks = LimitedUseKeys(
        tsp_world.engine, store, tsp_world.clock, limits=LukLimits(uses_max=2, atc_window=4)
    )
    yield Wallet(tsp_world, luks, ContactlessKernel(TERMINAL, random.Random(2026)))


def test_the_applets_arqc_verifies_at_the_token_service(wallet: Wallet) -> None:
    token = wallet.tsp.active_token(wallet.tsp.card("ICBC"))
    grant = wallet.luks.issue(token)
    applet = PaymentApplet([hce_card(token, grant)], wallet.tsp.clock)
    first = wallet.tap(applet)
    assert first["5F34"] == b"\x01" and first["9F36"] == b"\x00\x01"
    assert wallet.verify(token, first) == Verdict(LukCode.OK, 1, 1)
    assert wallet.verify(token, first).code is LukCode.ATC_REPLAYED
    second = wallet.tap(applet)
    assert second["9F36"] == b"\x00\x02"  # the ATC moves on
    assert wallet.verify(token, second) == Verdict(LukCode.OK, 1, 0)


def test_a_replenished_luk_takes_over_where_the_old_one_stopped(wallet: Wallet) -> None:
    token = wallet.tsp.active_token(wallet.tsp.card("ICBC"))
    grant = wallet.luks.issue(token)
    applet = PaymentApplet([hce_card(token, grant)], wallet.tsp.clock)
    for _ in range(grant.uses_max):
        assert wallet.verify(token, wallet.tap(applet)).ok
    assert not applet.key_status(grant.token_number).usable  # the wallet replenishes
    fresh = wallet.luks.replenish(token)
    applet.load_keys(grant.token_number, hce_luk(fresh))
    icc = wallet.tap(applet)
    assert int.from_bytes(icc["9F36"], "big") == fresh.atc_first
    assert icc["9F10"][-4:] == fresh.luk_index.to_bytes(4, "big")  # the IAD names the LUK
    assert wallet.verify(token, icc) == Verdict(LukCode.OK, 2, 1)
