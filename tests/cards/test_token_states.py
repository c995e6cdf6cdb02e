"""Tokens' lifecycle in storage on both engines: the cardholder, the issuer, a lost or
unbound device, a re-issued card; every change compare-and-set, every refusal a no-op."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from milletpay.cards import (
    CardNotVaulted,
    Expiry,
    Party,
    Token,
    TokenDomain,
    TokenEvent,
    TokenState,
    TokenTransitionRefused,
    TokenUnknown,
)
from milletpay.cards.tables import tokens

from .conftest import DEVICE, OTHER_PHONE, USER_ID, TspWorld, card_expiry


def _state(world: TspWorld, token: Token) -> tuple[TokenState, frozenset[Party]]:
    lifecycle = world.tsp.token(token.id).lifecycle
    return lifecycle.state, lifecycle.suspended_by


def test_the_cardholder_suspends_and_resumes(tsp_world: TspWorld) -> None:
    token = tsp_world.active_token(tsp_world.card())
    suspended = tsp_world.tsp.suspend(token.id, Party.CARDHOLDER)
    assert (suspended.state, suspended.lifecycle.suspended_by) == (
        TokenState.SUSPENDED,
        {Party.CARDHOLDER},
    )
    assert _state(tsp_world, token) == (TokenState.SUSPENDED, {Party.CARDHOLDER})
    assert tsp_world.tsp.resume(token.id, Party.CARDHOLDER).state is TokenState.ACTIVE
    assert _state(tsp_world, token) == (TokenState.ACTIVE, frozenset())


def test_a_token_stays_suspended_until_every_holder_resumes(tsp_world: TspWorld) -> None:
    token = tsp_world.active_token(tsp_world.card())
    tsp_world.tsp.suspend(token.id, Party.ISSUER)
    tsp_world.tsp.suspend(token.id, Party.CARDHOLDER)
    assert _state(tsp_world, token) == (TokenState.SUSPENDED, {Party.ISSUER, Party.CARDHOLDER})
    assert tsp_world.tsp.resume(token.id, Party.CARDHOLDER).state is TokenState.SUSPENDED
    with pytest.raises(TokenTransitionRefused, match="only issuer can resume"):
        tsp_world.tsp.resume(token.id, Party.CARDHOLDER)
    assert tsp_world.tsp.resume(token.id, Party.ISSUER).state is TokenState.ACTIVE


def test_deleted_is_final(tsp_world: TspWorld) -> None:
    token = tsp_world.active_token(tsp_world.card())
    assert tsp_world.tsp.delete(token.id, Party.CARDHOLDER).state is TokenState.DELETED
    for change in (tsp_world.tsp.suspend, tsp_world.tsp.resume, tsp_world.tsp.delete):
        with pytest.raises(TokenTransitionRefused, match="deleted"):
            change(token.id, Party.ISSUER)
    assert _state(tsp_world, token) == (TokenState.DELETED, frozenset())


@pytest.mark.parametrize(
    ("event", "party", "match"),
    [
        (TokenEvent.SUSPEND, Party.TOKEN_SERVICE, "may not suspend"),
        (TokenEvent.RESUME, Party.CARDHOLDER, "cannot resume"),
    ],
)
def test_a_refused_change_writes_nothing(
    tsp_world: TspWorld, event: TokenEvent, party: Party, match: str
) -> None:
    token = tsp_world.active_token(tsp_world.card())
    change = {TokenEvent.SUSPEND: tsp_world.tsp.suspend, TokenEvent.RESUME: tsp_world.tsp.resume}
    with pytest.raises(TokenTransitionRefused, match=match):
        change[event](token.id, party)
    assert tsp_world.tsp.token(token.id) == token


def test_an_inactive_token_cannot_be_suspended(tsp_world: TspWorld) -> None:
    answer = tsp_world.provision(tsp_world.card(), phone=OTHER_PHONE)
    assert answer.token is not None
    with pytest.raises(TokenTransitionRefused, match="inactive cannot suspend"):
        tsp_world.tsp.suspend(answer.token.id, Party.CARDHOLDER)
    assert tsp_world.tsp.delete(answer.token.id, Party.CARDHOLDER).state is TokenState.DELETED


def test_changing_an_unknown_token_is_an_error(tsp_world: TspWorld) -> None:
    with pytest.raises(TokenUnknown):
        tsp_world.tsp.suspend(7, Party.CARDHOLDER)


def test_a_change_decided_on_a_stale_state_is_not_written(tsp_world: TspWorld) -> None:
    token = tsp_world.active_token(tsp_world.card())
    with tsp_world.engine.connect() as conn:
        stale = conn.execute(sa.select(tokens)).one()
    tsp_world.tsp.suspend(token.id, Party.CARDHOLDER)
    with tsp_world.engine.begin() as conn:
        assert tsp_world.tsp._change(conn, stale, TokenEvent.SUSPEND, Party.ISSUER) is None
    assert _state(tsp_world, token) == (TokenState.SUSPENDED, {Party.CARDHOLDER})


def test_concurrent_suspensions_both_hold(tsp_world: TspWorld) -> None:
    made = [tsp_world.active_token(tsp_world.card(), domain=d) for d in TokenDomain]
    parties = (Party.CARDHOLDER, Party.ISSUER, Party.DEVICE)
    with ThreadPoolExecutor(max_workers=len(parties)) as pool:
        for token in made:
            list(pool.map(lambda party, t=token: tsp_world.tsp.suspend(t.id, party), parties))
    for token in made:
        assert _state(tsp_world, token) == (TokenState.SUSPENDED, frozenset(parties))


# -- devices -----------------------------------------------------------------------


def _device_tokens(world: TspWorld) -> tuple[Token, Token, Token]:
    """On DEVICE: an active token, a suspended one (by the cardholder) and one waiting
    for its step-up code; and on another device, an active one."""
    active = world.active_token(world.card())
    suspended = world.active_token(world.card())
    world.tsp.suspend(suspended.id, Party.CARDHOLDER)
    waiting = world.provision(world.card(), phone=OTHER_PHONE).token
    assert waiting is not None
    world.active_token(world.card(), device="tablet-1")
    return active, suspended, waiting


def test_a_lost_device_suspends_its_tokens(tsp_world: TspWorld) -> None:
    active, suspended, waiting = _device_tokens(tsp_world)
    change = tsp_world.tsp.on_device_lost(USER_ID, DEVICE)
    assert {t.id for t in change.changed} == {active.id, suspended.id, waiting.id}
    assert change.refused == ()
    assert _state(tsp_world, active) == (TokenState.SUSPENDED, {Party.DEVICE})
    assert _state(tsp_world, suspended) == (
        TokenState.SUSPENDED,
        {Party.DEVICE, Party.CARDHOLDER},
    )
    assert _state(tsp_world, waiting) == (TokenState.DELETED, frozenset())
    other = [t for t in tsp_world.tsp.tokens_of(USER_ID, "tablet-1")]
    assert [t.state for t in other] == [TokenState.ACTIVE]
    again = tsp_world.tsp.on_device_lost(USER_ID, DEVICE)
    assert again.changed == () and len(again.refused) == 2
    assert all("already suspended" in r.reason for r in again.refused)


def test_a_found_device_lifts_only_its_own_suspension(tsp_world: TspWorld) -> None:
    active, suspended, _waiting = _device_tokens(tsp_world)
    tsp_world.tsp.on_device_lost(USER_ID, DEVICE)
    change = tsp_world.tsp.on_device_found(USER_ID, DEVICE)
    assert {t.id for t in change.changed} == {active.id, suspended.id}
    assert _state(tsp_world, active) == (TokenState.ACTIVE, frozenset())
    assert _state(tsp_world, suspended) == (TokenState.SUSPENDED, {Party.CARDHOLDER})


def test_an_unbound_device_deletes_its_tokens(tsp_world: TspWorld) -> None:
    active, suspended, waiting = _device_tokens(tsp_world)
    change = tsp_world.tsp.on_device_unbound(USER_ID, DEVICE)
    assert {t.id for t in change.changed} == {active.id, suspended.id, waiting.id}
    assert {t.state for t in tsp_world.tsp.tokens_of(USER_ID, DEVICE)} == {TokenState.DELETED}
    assert [t.state for t in tsp_world.tsp.tokens_of(USER_ID, "tablet-1")] == [TokenState.ACTIVE]
    assert tsp_world.tsp.on_device_unbound(USER_ID, DEVICE).changed == ()


def test_device_events_touch_only_that_users_device(tsp_world: TspWorld) -> None:
    token = tsp_world.active_token(tsp_world.card())
    assert tsp_world.tsp.on_device_lost(USER_ID + 1, DEVICE).changed == ()
    assert tsp_world.tsp.token(token.id).state is TokenState.ACTIVE


# -- the issuer --------------------------------------------------------------------


def test_the_issuer_suspends_resumes_and_deletes_every_token_of_a_card(
    tsp_world: TspWorld,
) -> None:
    card = tsp_world.card()
    mine = [tsp_world.active_token(card, domain=d) for d in TokenDomain]
    other = tsp_world.active_token(tsp_world.card())
    tsp_world.tsp.suspend(mine[0].id, Party.CARDHOLDER)

    suspended = tsp_world.tsp.on_issuer_event(card.pan, TokenEvent.SUSPEND)
    assert {t.id for t in suspended.changed} == {t.id for t in mine}
    assert all(Party.ISSUER in t.lifecycle.suspended_by for t in suspended.changed)
    resumed = tsp_world.tsp.on_issuer_event(mine[0].vault_ref, TokenEvent.RESUME)
    assert [t.state for t in resumed.changed] == [
        TokenState.SUSPENDED,
        TokenState.ACTIVE,
        TokenState.ACTIVE,
    ]
    deleted = tsp_world.tsp.on_issuer_event(card.pan, TokenEvent.DELETE)
    assert {t.state for t in deleted.changed} == {TokenState.DELETED}
    assert tsp_world.tsp.token(other.id).state is TokenState.ACTIVE


def test_an_issuer_resume_it_did_not_suspend_is_refused_per_token(tsp_world: TspWorld) -> None:
    card = tsp_world.card()
    token = tsp_world.active_token(card)
    tsp_world.tsp.suspend(token.id, Party.CARDHOLDER)
    change = tsp_world.tsp.on_issuer_event(card.pan, TokenEvent.RESUME)
    assert change.changed == ()
    (refusal,) = change.refused
    assert refusal.token_id == token.id and "did not suspend" in refusal.reason
    assert _state(tsp_world, token) == (TokenState.SUSPENDED, {Party.CARDHOLDER})


def test_an_issuer_event_for_a_card_never_tokenized_is_an_error(tsp_world: TspWorld) -> None:
    card = tsp_world.card()
    with pytest.raises(CardNotVaulted) as refused:
        tsp_world.tsp.on_issuer_event(card.pan, TokenEvent.SUSPEND)
    assert card.pan not in str(refused.value)


# -- re-issue ----------------------------------------------------------------------


def test_a_reissued_card_keeps_its_tokens(tsp_world: TspWorld) -> None:
    card = tsp_world.card()
    token = tsp_world.active_token(card)
    bank = tsp_world.banks.bank("ICBC")
    new_card = bank.issue_card(card.account_id, pin="314159")
    entry = tsp_world.tsp.reissue(card.pan, new_card.pan, card_expiry(new_card))
    assert entry.ref == token.vault_ref and entry.par == token.par
    assert tsp_world.tsp.token(token.id) == token  # same number, expiry, PSN, state
    revealed = tsp_world.vault.reveal(token.vault_ref)
    assert revealed.pan.clear_digits() == new_card.pan
    assert tsp_world.vault.find(card.pan) is None
    with pytest.raises(CardNotVaulted):
        tsp_world.tsp.reissue(card.pan, new_card.pan, card_expiry(new_card))


def test_a_reissue_to_a_new_expiry_only_keeps_the_number(tsp_world: TspWorld) -> None:
    card = tsp_world.card()
    token = tsp_world.active_token(card)
    tsp_world.tsp.reissue(card.pan, card.pan, Expiry(2040, 1))
    revealed = tsp_world.vault.reveal(token.vault_ref)
    assert (revealed.pan.clear_digits(), revealed.expiry) == (card.pan, Expiry(2040, 1))
    assert tsp_world.tsp.token(token.id) == token
