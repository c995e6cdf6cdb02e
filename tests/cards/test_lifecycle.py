"""Every transition of a token's lifecycle, every refusal, and random walks checked
against a small model written apart from the rules table."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from milletpay.cards.lifecycle import (
    Lifecycle,
    Party,
    TokenEvent,
    TokenState,
    TokenTransitionRefused,
    apply,
)

ACTIVE = Lifecycle(TokenState.ACTIVE)
DELETED = Lifecycle(TokenState.DELETED)


def _suspended(*parties: Party) -> Lifecycle:
    return Lifecycle(TokenState.SUSPENDED, frozenset(parties))


def test_a_new_token_is_inactive_and_does_not_pay() -> None:
    assert Lifecycle().state is TokenState.INACTIVE
    assert not Lifecycle().usable
    assert ACTIVE.usable


@pytest.mark.parametrize("party", [Party.TOKEN_SERVICE, Party.ISSUER])
def test_the_token_service_or_the_issuer_activates_an_inactive_token(party: Party) -> None:
    assert apply(Lifecycle(), TokenEvent.ACTIVATE, party) == ACTIVE


@pytest.mark.parametrize("party", [Party.CARDHOLDER, Party.DEVICE])
def test_the_cardholder_or_the_device_cannot_activate(party: Party) -> None:
    with pytest.raises(TokenTransitionRefused, match=f"the {party} may not activate"):
        apply(Lifecycle(), TokenEvent.ACTIVATE, party)


@pytest.mark.parametrize("start", [ACTIVE, _suspended(Party.ISSUER), DELETED])
def test_only_an_inactive_token_is_activated(start: Lifecycle) -> None:
    with pytest.raises(TokenTransitionRefused):
        apply(start, TokenEvent.ACTIVATE, Party.TOKEN_SERVICE)


@pytest.mark.parametrize("party", [Party.CARDHOLDER, Party.ISSUER, Party.DEVICE])
def test_suspend_and_resume_by_the_same_party(party: Party) -> None:
    suspended = apply(ACTIVE, TokenEvent.SUSPEND, party)
    assert suspended == _suspended(party)
    assert not suspended.usable
    assert apply(suspended, TokenEvent.RESUME, party) == ACTIVE


def test_the_token_service_neither_suspends_nor_resumes() -> None:
    with pytest.raises(TokenTransitionRefused, match="the token_service may not suspend"):
        apply(ACTIVE, TokenEvent.SUSPEND, Party.TOKEN_SERVICE)
    with pytest.raises(TokenTransitionRefused, match="the token_service may not resume"):
        apply(_suspended(Party.ISSUER), TokenEvent.RESUME, Party.TOKEN_SERVICE)


def test_a_cardholder_cannot_lift_the_issuers_suspension() -> None:
    by_issuer = apply(ACTIVE, TokenEvent.SUSPEND, Party.ISSUER)
    with pytest.raises(TokenTransitionRefused, match="only issuer can resume it"):
        apply(by_issuer, TokenEvent.RESUME, Party.CARDHOLDER)


def test_the_token_pays_again_only_when_every_suspension_is_lifted() -> None:
    lost = apply(ACTIVE, TokenEvent.SUSPEND, Party.DEVICE)  # the phone is reported lost
    also_issuer = apply(lost, TokenEvent.SUSPEND, Party.ISSUER)
    assert also_issuer == _suspended(Party.DEVICE, Party.ISSUER)
    found = apply(also_issuer, TokenEvent.RESUME, Party.DEVICE)  # the phone is found
    assert found == _suspended(Party.ISSUER)
    assert not found.usable
    assert apply(found, TokenEvent.RESUME, Party.ISSUER) == ACTIVE


def test_suspending_twice_by_the_same_party_is_refused() -> None:
    with pytest.raises(TokenTransitionRefused, match="already suspended"):
        apply(_suspended(Party.CARDHOLDER), TokenEvent.SUSPEND, Party.CARDHOLDER)


@pytest.mark.parametrize("start", [Lifecycle(), ACTIVE])
def test_only_a_suspended_token_is_resumed(start: Lifecycle) -> None:
    with pytest.raises(TokenTransitionRefused, match=f"that is {start.state} cannot resume"):
        apply(start, TokenEvent.RESUME, Party.CARDHOLDER)


def test_an_inactive_token_cannot_be_suspended() -> None:
    with pytest.raises(TokenTransitionRefused, match="that is inactive cannot suspend"):
        apply(Lifecycle(), TokenEvent.SUSPEND, Party.ISSUER)


@pytest.mark.parametrize("start", [Lifecycle(), ACTIVE, _suspended(Party.ISSUER, Party.DEVICE)])
@pytest.mark.parametrize("party", list(Party))
def test_every_party_may_delete_a_live_token(start: Lifecycle, party: Party) -> None:
    assert apply(start, TokenEvent.DELETE, party) == DELETED


@pytest.mark.parametrize("event", list(TokenEvent))
@pytest.mark.parametrize("party", list(Party))
def test_deleted_is_final(event: TokenEvent, party: Party) -> None:
    with pytest.raises(TokenTransitionRefused, match="the token is deleted"):
        apply(DELETED, event, party)


# -- random walks against a model -------------------------------------------------------


class Model:
    """The rules restated plainly, for the walk: who holds a suspension, and flags."""

    def __init__(self) -> None:
        self.activated = False
        self.deleted = False
        self.holders: set[Party] = set()

    def step(self, event: TokenEvent, party: Party) -> bool:
        """Apply if allowed; whether it was."""
        if self.deleted:
            return False
        if event is TokenEvent.DELETE:
            self.deleted = True
            self.holders.clear()  # a deleted token has nothing left to resume
            return True
        if event is TokenEvent.ACTIVATE:
            ok = not self.activated and party in (Party.TOKEN_SERVICE, Party.ISSUER)
            self.activated = self.activated or ok
            return ok
        if party is Party.TOKEN_SERVICE or not self.activated:
            return False
        if event is TokenEvent.SUSPEND:
            if party in self.holders:
                return False
            self.holders.add(party)
            return True
        if party not in self.holders:  # RESUME
            return False
        self.holders.remove(party)
        return True

    def state(self) -> TokenState:
        if self.deleted:
            return TokenState.DELETED
        if not self.activated:
            return TokenState.INACTIVE
        return TokenState.SUSPENDED if self.holders else TokenState.ACTIVE


@given(st.lists(st.tuples(st.sampled_from(TokenEvent), st.sampled_from(Party)), max_size=40))
def test_random_walks_follow_the_model(steps: list[tuple[TokenEvent, Party]]) -> None:
    lifecycle, model = Lifecycle(), Model()
    for event, party in steps:
        allowed = model.step(event, party)
        try:
            lifecycle = apply(lifecycle, event, party)
        except TokenTransitionRefused:
            assert not allowed, (event, party, lifecycle)
        else:
            assert allowed, (event, party, lifecycle)
        assert lifecycle.state is model.state()
        assert lifecycle.suspended_by == frozenset(model.holders)
        assert lifecycle.usable == (model.state() is TokenState.ACTIVE)
