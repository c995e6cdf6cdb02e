"""Detokenization for the card network on both engines: the card behind an active token
in its domain, and a stable refusal for everything else."""

from __future__ import annotations

import logging

import pytest

from milletpay.banks import IssuedCard
from milletpay.cards import (
    TOKEN_VALIDITY_YEARS,
    DetokenizeCode,
    Detokenized,
    Pan,
    Party,
    TokenDomain,
    TokenEvent,
)

from .conftest import OTHER_PHONE, TspWorld, card_expiry


def _refused(code: DetokenizeCode) -> Detokenized:
    return Detokenized(code)


def test_an_active_token_in_its_domain_detokenizes_to_its_card(tsp_world: TspWorld) -> None:
    card = tsp_world.card()
    token = tsp_world.active_token(card, domain=TokenDomain.IN_APP)
    answer = tsp_world.detokenizer.detokenize(token.number, TokenDomain.IN_APP, token.device_id)
    assert answer.ok
    assert answer.pan == Pan(card.pan) and answer.expiry == card_expiry(card)
    assert (answer.bank_code, answer.token_id) == ("ICBC", token.id)
    assert card.pan not in repr(answer)


@pytest.mark.parametrize("domain", [TokenDomain.CONTACTLESS, TokenDomain.ECOMMERCE])
def test_another_domain_is_refused(tsp_world: TspWorld, domain: TokenDomain) -> None:
    token = tsp_world.active_token(tsp_world.card(), domain=TokenDomain.IN_APP)
    answer = tsp_world.detokenizer.detokenize(token.number, domain)
    assert answer == _refused(DetokenizeCode.DOMAIN_MISMATCH)


def test_an_unknown_token_is_refused(tsp_world: TspWorld) -> None:
    card = tsp_world.card()
    for number in ("6288000000000000001", card.pan, "", "6" * 200):
        answer = tsp_world.detokenizer.detokenize(number, TokenDomain.CONTACTLESS)
        assert answer == _refused(DetokenizeCode.TOKEN_UNKNOWN)


def _not_active(world: TspWorld, card: IssuedCard) -> None:
    token = world.active_token(card)
    detokenize = world.detokenizer.detokenize
    world.tsp.suspend(token.id, Party.CARDHOLDER)
    assert detokenize(token.number, token.domain) == _refused(DetokenizeCode.TOKEN_NOT_ACTIVE)
    world.tsp.resume(token.id, Party.CARDHOLDER)
    assert detokenize(token.number, token.domain).ok
    world.tsp.on_issuer_event(card.pan, TokenEvent.SUSPEND)
    assert detokenize(token.number, token.domain) == _refused(DetokenizeCode.TOKEN_NOT_ACTIVE)
    world.tsp.on_issuer_event(card.pan, TokenEvent.DELETE)
    assert detokenize(token.number, token.domain) == _refused(DetokenizeCode.TOKEN_NOT_ACTIVE)


def test_a_suspended_or_deleted_token_is_refused(tsp_world: TspWorld) -> None:
    _not_active(tsp_world, tsp_world.card())


def test_a_token_waiting_for_its_step_up_is_refused(tsp_world: TspWorld) -> None:
    answer = tsp_world.provision(tsp_world.card(), phone=OTHER_PHONE)
    assert answer.token is not None
    refused = tsp_world.detokenizer.detokenize(answer.token.number, answer.token.domain)
    assert refused == _refused(DetokenizeCode.TOKEN_NOT_ACTIVE)


def test_a_token_past_its_expiry_month_is_refused(tsp_world: TspWorld) -> None:
    token = tsp_world.active_token(tsp_world.card())
    tsp_world.clock.advance(seconds=TOKEN_VALIDITY_YEARS * 365 * 24 * 3600)
    assert tsp_world.detokenizer.detokenize(token.number, token.domain).ok  # its last month
    tsp_world.clock.advance(seconds=31 * 24 * 3600)
    answer = tsp_world.detokenizer.detokenize(token.number, token.domain)
    assert answer == _refused(DetokenizeCode.TOKEN_EXPIRED)


def test_a_reissued_card_detokenizes_to_the_new_number(tsp_world: TspWorld) -> None:
    card = tsp_world.card()
    token = tsp_world.active_token(card)
    new_card = tsp_world.banks.bank("ICBC").issue_card(card.account_id, pin="314159")
    tsp_world.tsp.reissue(card.pan, new_card.pan, card_expiry(new_card))
    answer = tsp_world.detokenizer.detokenize(token.number, token.domain)
    assert answer.pan == Pan(new_card.pan) and answer.expiry == card_expiry(new_card)


def test_a_card_number_sent_as_a_token_is_logged_masked(
    tsp_world: TspWorld, caplog: pytest.LogCaptureFixture
) -> None:
    card = tsp_world.card()
    with caplog.at_level(logging.DEBUG, logger="milletpay"):
        tsp_world.detokenizer.detokenize(card.pan, TokenDomain.CONTACTLESS)
    assert card.pan not in caplog.text
    assert Pan(card.pan).masked in caplog.text


def test_a_wallet_token_pays_in_app_only_from_its_own_device(tsp_world: TspWorld) -> None:
    token = tsp_world.active_token(tsp_world.card(), domain=TokenDomain.CONTACTLESS)
    detokenize = tsp_world.detokenizer.detokenize
    assert detokenize(token.number, TokenDomain.IN_APP, token.device_id).ok
    mismatch = _refused(DetokenizeCode.DOMAIN_MISMATCH)
    assert detokenize(token.number, TokenDomain.IN_APP, "another-phone") == mismatch
    assert detokenize(token.number, TokenDomain.IN_APP) == mismatch
    assert detokenize(token.number, TokenDomain.ECOMMERCE, token.device_id) == mismatch


def test_an_in_app_token_never_pays_at_a_terminal(tsp_world: TspWorld) -> None:
    token = tsp_world.active_token(tsp_world.card(), domain=TokenDomain.IN_APP)
    answer = tsp_world.detokenizer.detokenize(
        token.number, TokenDomain.CONTACTLESS, token.device_id
    )
    assert answer == _refused(DetokenizeCode.DOMAIN_MISMATCH)
