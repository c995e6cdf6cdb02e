"""A token's lifecycle: inactive → active ⇄ suspended → deleted, as data.

The parties that move a token (EMV Payment Tokenisation roles) are the token service
itself, the cardholder (in the wallet app), the issuer, and the device the token lives on
(lost, or unbound from the user). `TRANSITIONS` says which party may do what from which
state; `apply` is the only way a lifecycle changes, and refuses anything else with an
error that names the rule.

A suspension belongs to whoever placed it: the token is active again only when every
party that suspended it has resumed it, so a cardholder cannot lift the issuer's
suspension, nor the issuer a lost phone's. Deleted is final: nothing leaves it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from milletpay.core.errors import MilletError


class TokenState(StrEnum):
    INACTIVE = "inactive"  # provisioned, waiting for ID&V (a step-up) to finish
    ACTIVE = "active"
    SUSPENDED = "suspended"
    DELETED = "deleted"  # final


class Party(StrEnum):
    TOKEN_SERVICE = "token_service"  # after ID&V; or when a step-up fails or lapses
    CARDHOLDER = "cardholder"
    ISSUER = "issuer"
    DEVICE = "device"  # the phone reported lost, or unbound from the user


class TokenEvent(StrEnum):
    ACTIVATE = "activate"
    SUSPEND = "suspend"
    RESUME = "resume"
    DELETE = "delete"


class TokenTransitionRefused(MilletError):
    code = "token_transition_refused"


@dataclass(frozen=True, slots=True)
class Rule:
    """An event: the states it may start from and the parties that may cause it."""

    from_states: frozenset[TokenState]
    parties: frozenset[Party]


_LIVE = frozenset({TokenState.INACTIVE, TokenState.ACTIVE, TokenState.SUSPENDED})

#: Who may do what, from where. Suspend and resume also count who holds a suspension.
TRANSITIONS: dict[TokenEvent, Rule] = {
    TokenEvent.ACTIVATE: Rule(
        frozenset({TokenState.INACTIVE}), frozenset({Party.TOKEN_SERVICE, Party.ISSUER})
    ),
    TokenEvent.SUSPEND: Rule(
        frozenset({TokenState.ACTIVE, TokenState.SUSPENDED}),
        frozenset({Party.CARDHOLDER, Party.ISSUER, Party.DEVICE}),
    ),
    TokenEvent.RESUME: Rule(
        frozenset({TokenState.SUSPENDED}),
        frozenset({Party.CARDHOLDER, Party.ISSUER, Party.DEVICE}),
    ),
    TokenEvent.DELETE: Rule(
        _LIVE, frozenset({Party.TOKEN_SERVICE, Party.CARDHOLDER, Party.ISSUER, Party.DEVICE})
    ),
}


@dataclass(frozen=True, slots=True)
class Lifecycle:
    state: TokenState = TokenState.INACTIVE
    #: The parties whose suspension holds the token (empty unless suspended).
    suspended_by: frozenset[Party] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        assert (self.state is TokenState.SUSPENDED) == bool(self.suspended_by)

    @property
    def usable(self) -> bool:
        """Only an active token pays."""
        return self.state is TokenState.ACTIVE


def apply(lifecycle: Lifecycle, event: TokenEvent, party: Party) -> Lifecycle:
    """The lifecycle after `party` causes `event`; `TokenTransitionRefused` (naming the
    rule) if the rules do not allow it."""
    rule = TRANSITIONS[event]
    state = lifecycle.state
    if state not in rule.from_states:
        if state is TokenState.DELETED:
            raise TokenTransitionRefused(f"the token is deleted: it cannot {event} any more")
        raise TokenTransitionRefused(f"a token that is {state} cannot {event}")
    if party not in rule.parties:
        raise TokenTransitionRefused(f"the {party} may not {event} a token")
    if event is TokenEvent.ACTIVATE:
        return Lifecycle(TokenState.ACTIVE)
    if event is TokenEvent.DELETE:
        return Lifecycle(TokenState.DELETED)
    if event is TokenEvent.SUSPEND:
        if party in lifecycle.suspended_by:
            raise TokenTransitionRefused(f"the {party} has already suspended this token")
        return Lifecycle(TokenState.SUSPENDED, lifecycle.suspended_by | {party})
    # RESUME: lift this party's own suspension; the token is active once none is left.
    if party not in lifecycle.suspended_by:
        holders = ", ".join(sorted(lifecycle.suspended_by))
        raise TokenTransitionRefused(
            f"the {party} did not suspend this token; only {holders} can resume it"
        )
    left = lifecycle.suspended_by - {party}
    return Lifecycle(TokenState.SUSPENDED, left) if left else Lifecycle(TokenState.ACTIVE)
