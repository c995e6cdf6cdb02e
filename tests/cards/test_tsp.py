"""Token provisioning on both engines: eligibility, the issuer's ID&V, the token made,
the step-up by SMS, and the refusals that store nothing."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa
from stdnum import luhn

from milletpay.banks import CardStatus, IdvReason, bank_for_pan, bank_spec
from milletpay.cards import (
    MILLET_BIN_CONTROLLER_ID,
    STEP_UP_ATTEMPTS_MAX,
    STEP_UP_TTL_S,
    TOKEN_PSN,
    CardEnvelopeInvalid,
    DeclineCode,
    Expiry,
    Party,
    ProvisionOutcome,
    ProvisionRequest,
    StepUpChannel,
    StepUpStatus,
    TokenDomain,
    TokenEvent,
    TokenNumbersExhausted,
    TokenRequestInvalid,
    TokenService,
    TokenState,
    TokenUnknown,
    seal_card_for_tsp,
)
from milletpay.cards.tables import token_step_up_sends, token_step_ups, tokens, vault_pans
from milletpay.cards.tsp import STEP_UP_SENDS_PER_CARD_MAX, STEP_UP_SENDS_WINDOW_S

from .conftest import DEVICE, OTHER_PHONE, USER_ID, WALLET_PHONE, TspWorld
from .pans import NOT_TOKENIZABLE, VISA


def _count(world: TspWorld, table: sa.TableClause) -> int:
    with world.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


# -- green -------------------------------------------------------------------------


def test_green_makes_an_active_token_from_the_token_range(tsp_world: TspWorld) -> None:
    card = tsp_world.card()
    answer = tsp_world.provision(card)
    assert answer.outcome is ProvisionOutcome.APPROVED
    assert answer.reason == IdvReason.VERIFIED
    token = answer.token
    assert token is not None
    assert token.state is TokenState.ACTIVE
    assert token.number[:6] in bank_spec("ICBC").token_iin_range
    assert len(token.number) == len(card.pan) and luhn.is_valid(token.number)
    assert token.number != card.pan and bank_for_pan(token.number) is None
    assert (token.psn, token.bank_code, token.user_id) == (TOKEN_PSN, "ICBC", USER_ID)
    assert (token.device_id, token.domain) == (DEVICE, TokenDomain.CONTACTLESS)
    assert token.par.startswith(MILLET_BIN_CONTROLLER_ID) and len(token.par) == 29
    assert tsp_world.vault.reveal(token.vault_ref).pan.clear_digits() == card.pan
    assert tsp_world.tsp.token(token.id) == token
    assert tsp_world.sms.outbox == []


def test_a_token_expires_three_years_after_provisioning(tsp_world: TspWorld) -> None:
    token = tsp_world.active_token(tsp_world.card())
    # The manual clock starts in November 2023 (China time).
    assert token.expiry == Expiry(2026, 11)


def test_every_token_of_a_card_has_the_cards_par(tsp_world: TspWorld) -> None:
    card = tsp_world.card()
    made = [
        tsp_world.active_token(card, device=device, domain=domain)
        for device in ("phone-1", "watch-1")
        for domain in TokenDomain
    ]
    assert len({t.number for t in made}) == len(made) == 6
    assert len({t.par for t in made}) == 1
    assert len({t.vault_ref for t in made}) == 1
    other = tsp_world.active_token(tsp_world.card())
    assert other.par != made[0].par


def test_a_second_live_token_for_the_same_card_device_and_domain_is_declined(
    tsp_world: TspWorld,
) -> None:
    card = tsp_world.card()
    first = tsp_world.active_token(card)
    again = tsp_world.provision(card)
    assert again.outcome is ProvisionOutcome.DECLINED
    assert again.decline is DeclineCode.TOKEN_EXISTS
    tsp_world.tsp.delete(first.id, Party.CARDHOLDER)
    assert tsp_world.active_token(card).number != first.number


def test_the_database_refuses_two_live_tokens_for_one_card_device_and_domain(
    tsp_world: TspWorld,
) -> None:
    token = tsp_world.active_token(tsp_world.card())
    with tsp_world.engine.connect() as conn:
        row = conn.execute(sa.select(tokens)).one()._asdict()
    row.update(id=b"\x01" * 16, token_number="6288000000000000001")
    with pytest.raises(sa.exc.IntegrityError), tsp_world.engine.begin() as conn:
        conn.execute(sa.insert(tokens).values(row))
    assert [t.id for t in tsp_world.tsp.tokens_of(USER_ID)] == [token.id]


def test_a_token_number_taken_is_drawn_again(tsp_world: TspWorld) -> None:
    draws = iter([0, 7, 0, 7, 0, 8])  # IIN offset, then the body: the same body twice
    world = tsp_world
    world.tsp = TokenService(
        world.engine, world.vault, world.keyring, world.banks, world.sms, world.clock,
        randbelow=lambda _n: next(draws),
    )  # fmt: skip
    first = world.active_token(world.card())
    second = world.active_token(world.card())
    assert first.number[:-1] == "628800" + "7".rjust(12, "0")
    assert second.number[:-1] == "628800" + "8".rjust(12, "0")


def test_a_full_token_range_is_an_error_and_stores_no_token(tsp_world: TspWorld) -> None:
    world = tsp_world
    world.tsp = TokenService(
        world.engine, world.vault, world.keyring, world.banks, world.sms, world.clock,
        randbelow=lambda _n: 0,
    )  # fmt: skip
    world.active_token(world.card())
    with pytest.raises(TokenNumbersExhausted):
        world.provision(world.card())
    assert _count(world, tokens) == 1


# -- eligibility and red -----------------------------------------------------------


def test_a_card_of_no_partner_bank_is_declined(tsp_world: TspWorld) -> None:
    envelope = seal_card_for_tsp(tsp_world.tsp.public_key(), VISA, Expiry(2031, 9), "123")
    request = ProvisionRequest(USER_ID, DEVICE, TokenDomain.IN_APP, WALLET_PHONE, envelope)
    answer = tsp_world.tsp.provision(request)
    assert answer.outcome is ProvisionOutcome.DECLINED
    assert answer.decline is DeclineCode.ISSUER_NOT_PARTNER
    assert _count(tsp_world, vault_pans) == 0


def test_a_card_of_no_product_is_declined(tsp_world: TspWorld) -> None:
    key = tsp_world.tsp.public_key()
    envelope = seal_card_for_tsp(key, NOT_TOKENIZABLE, Expiry(2031, 9), "123")
    request = ProvisionRequest(USER_ID, DEVICE, TokenDomain.IN_APP, WALLET_PHONE, envelope)
    answer = tsp_world.tsp.provision(request)
    assert answer.decline is DeclineCode.PRODUCT_NOT_TOKENIZABLE
    assert _count(tsp_world, vault_pans) == 0


def test_a_wrong_cvn2_is_declined_and_stores_nothing(tsp_world: TspWorld) -> None:
    card = tsp_world.card()
    wrong = f"{(int(card.cvn2) + 1) % 1000:03d}"
    answer = tsp_world.provision(card, cvn2=wrong)
    assert answer.outcome is ProvisionOutcome.DECLINED
    assert (answer.decline, answer.reason) == (DeclineCode.IDV_DECLINED, IdvReason.CVN2_MISMATCH)
    assert _count(tsp_world, vault_pans) == _count(tsp_world, tokens) == 0


def test_a_lost_card_is_declined(tsp_world: TspWorld) -> None:
    card = tsp_world.card()
    tsp_world.banks.bank("ICBC").set_card_status(card.card_id, CardStatus.LOST)
    answer = tsp_world.provision(card)
    assert (answer.decline, answer.reason) == (DeclineCode.IDV_DECLINED, IdvReason.CARD_LOST)


def test_a_tampered_envelope_is_refused_and_stores_nothing(tsp_world: TspWorld) -> None:
    envelope = tsp_world.envelope(tsp_world.card())
    tampered = envelope.replace('"ct": "', '"ct": "AAAA', 1)
    request = ProvisionRequest(USER_ID, DEVICE, TokenDomain.IN_APP, WALLET_PHONE, tampered)
    with pytest.raises(CardEnvelopeInvalid):
        tsp_world.tsp.provision(request)
    assert _count(tsp_world, vault_pans) == _count(tsp_world, tokens) == 0


@pytest.mark.parametrize("device", ["", "x" * 65, "phone\n1"])
def test_a_bad_device_id_is_refused(tsp_world: TspWorld, device: str) -> None:
    with pytest.raises(TokenRequestInvalid):
        tsp_world.provision(tsp_world.card(), device=device)
    assert _count(tsp_world, tokens) == 0


def test_an_unknown_token_is_an_error(tsp_world: TspWorld) -> None:
    with pytest.raises(TokenUnknown):
        tsp_world.tsp.token(42)


# -- yellow: step-up ---------------------------------------------------------------


def test_another_phone_gets_an_inactive_token_and_a_code_on_file(tsp_world: TspWorld) -> None:
    answer = tsp_world.provision(tsp_world.card(), phone=OTHER_PHONE)
    assert answer.outcome is ProvisionOutcome.STEP_UP
    assert answer.step_up is StepUpChannel.SMS
    assert answer.reason == IdvReason.PHONE_MISMATCH
    assert answer.phone_masked == "+86138****8000"
    assert answer.token is not None and answer.token.state is TokenState.INACTIVE
    assert tsp_world.sms.messages_to(OTHER_PHONE) == []
    (message,) = tsp_world.sms.messages_to(WALLET_PHONE)
    assert "Industrial and Commercial Bank of China" in message.text
    with tsp_world.engine.connect() as conn:
        code_hash = conn.execute(sa.select(token_step_ups.c.code_hash)).scalar_one()
    assert tsp_world.last_code().encode() not in code_hash


def test_the_right_code_activates_the_token(tsp_world: TspWorld) -> None:
    answer = tsp_world.provision(tsp_world.card(), phone=OTHER_PHONE)
    assert answer.token is not None
    confirmed = tsp_world.tsp.confirm_step_up(answer.token.id, tsp_world.last_code())
    assert confirmed.status is StepUpStatus.ACTIVATED
    assert confirmed.token is not None and confirmed.token.state is TokenState.ACTIVE
    assert _count(tsp_world, token_step_ups) == 0
    again = tsp_world.tsp.confirm_step_up(answer.token.id, tsp_world.last_code())
    assert again.status is StepUpStatus.NOT_PENDING


def _wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10**6:06d}"


def test_wrong_codes_count_down_then_delete_the_token(tsp_world: TspWorld) -> None:
    answer = tsp_world.provision(tsp_world.card(), phone=OTHER_PHONE)
    assert answer.token is not None
    token_id, wrong = answer.token.id, _wrong(tsp_world.last_code())
    for left in range(STEP_UP_ATTEMPTS_MAX - 1, 0, -1):
        tried = tsp_world.tsp.confirm_step_up(token_id, wrong)
        assert (tried.status, tried.attempts_left) == (StepUpStatus.CODE_WRONG, left)
        assert tsp_world.tsp.token(token_id).state is TokenState.INACTIVE
    last = tsp_world.tsp.confirm_step_up(token_id, wrong)
    assert last.status is StepUpStatus.ATTEMPTS_EXCEEDED
    assert tsp_world.tsp.token(token_id).state is TokenState.DELETED
    late = tsp_world.tsp.confirm_step_up(token_id, tsp_world.last_code())
    assert late.status is StepUpStatus.NOT_PENDING


def test_a_lapsed_code_deletes_the_token(tsp_world: TspWorld) -> None:
    answer = tsp_world.provision(tsp_world.card(), phone=OTHER_PHONE)
    assert answer.token is not None
    tsp_world.clock.advance(seconds=STEP_UP_TTL_S - 1)
    code = tsp_world.last_code()
    assert tsp_world.tsp.confirm_step_up(answer.token.id, _wrong(code)).attempts_left > 0
    tsp_world.clock.advance(seconds=1)
    lapsed = tsp_world.tsp.confirm_step_up(answer.token.id, code)
    assert lapsed.status is StepUpStatus.EXPIRED
    assert tsp_world.tsp.token(answer.token.id).state is TokenState.DELETED


def test_asking_again_replaces_a_token_waiting_for_its_code(tsp_world: TspWorld) -> None:
    card = tsp_world.card()
    first = tsp_world.provision(card, phone=OTHER_PHONE)
    second = tsp_world.provision(card, phone=OTHER_PHONE)
    assert first.token is not None and second.token is not None
    assert tsp_world.tsp.token(first.token.id).state is TokenState.DELETED
    assert tsp_world.tsp.confirm_step_up(first.token.id, "000000").status is (
        StepUpStatus.NOT_PENDING
    )
    confirmed = tsp_world.tsp.confirm_step_up(second.token.id, tsp_world.last_code())
    assert confirmed.status is StepUpStatus.ACTIVATED


def test_a_card_gets_a_bounded_number_of_codes_a_day(tsp_world: TspWorld) -> None:
    card = tsp_world.card()
    for _ in range(STEP_UP_SENDS_PER_CARD_MAX):
        assert tsp_world.provision(card, phone=OTHER_PHONE).outcome is ProvisionOutcome.STEP_UP
    waiting = tsp_world.tsp.tokens_of(USER_ID)[-1]
    assert len(tsp_world.sms.messages_to(WALLET_PHONE)) == STEP_UP_SENDS_PER_CARD_MAX
    refused = tsp_world.provision(card, phone=OTHER_PHONE)
    assert (refused.outcome, refused.decline) == (
        ProvisionOutcome.DECLINED,
        DeclineCode.STEP_UP_LIMIT,
    )
    assert "5 codes were sent for this card in 24 hours" in refused.reason
    # Nothing sent, nothing changed: the last token still waits for its code.
    assert len(tsp_world.sms.messages_to(WALLET_PHONE)) == STEP_UP_SENDS_PER_CARD_MAX
    assert tsp_world.tsp.token(waiting.id).state is TokenState.INACTIVE
    # Another card of the same holder's bank has its own codes.
    assert tsp_world.provision(tsp_world.card(), phone=OTHER_PHONE).outcome is (
        ProvisionOutcome.STEP_UP
    )
    tsp_world.clock.advance(seconds=STEP_UP_SENDS_WINDOW_S)
    assert tsp_world.provision(card, phone=OTHER_PHONE).outcome is ProvisionOutcome.STEP_UP


def test_the_sweep_removes_tokens_whose_code_lapsed(tsp_world: TspWorld) -> None:
    lapsing = tsp_world.provision(tsp_world.card(), phone=OTHER_PHONE).token
    active = tsp_world.active_token(tsp_world.card())
    tsp_world.clock.advance(seconds=STEP_UP_TTL_S - 1)
    fresh = tsp_world.provision(tsp_world.card(), phone=OTHER_PHONE).token
    assert lapsing is not None and fresh is not None
    assert tsp_world.tsp.sweep_step_ups() == 0  # nothing lapsed yet
    tsp_world.clock.advance(seconds=1)
    assert tsp_world.tsp.sweep_step_ups() == 1
    assert tsp_world.tsp.token(lapsing.id).state is TokenState.DELETED
    assert tsp_world.tsp.token(fresh.id).state is TokenState.INACTIVE
    assert tsp_world.tsp.token(active.id).state is TokenState.ACTIVE
    assert _count(tsp_world, token_step_ups) == 1  # the fresh token's code only
    assert tsp_world.tsp.sweep_step_ups() == 0  # again: nothing more
    assert _count(tsp_world, token_step_up_sends) == 2
    tsp_world.clock.advance(seconds=STEP_UP_SENDS_WINDOW_S)
    tsp_world.tsp.sweep_step_ups()
    assert _count(tsp_world, token_step_up_sends) == 0  # sends past the window go


def test_the_sweep_works_in_bounded_batches(tsp_world: TspWorld) -> None:
    waiting = [tsp_world.provision(tsp_world.card(), phone=OTHER_PHONE) for _ in range(3)]
    tsp_world.clock.advance(seconds=STEP_UP_TTL_S)
    assert tsp_world.tsp.sweep_step_ups(limit=2) == 2
    assert tsp_world.tsp.sweep_step_ups(limit=2) == 1
    states = {tsp_world.tsp.token(a.token.id).state for a in waiting if a.token is not None}
    assert states == {TokenState.DELETED}


def test_no_phone_on_file_waits_for_the_issuer(tsp_world: TspWorld) -> None:
    card = tsp_world.card(phone=None)
    answer = tsp_world.provision(card)
    assert answer.outcome is ProvisionOutcome.STEP_UP
    assert (answer.step_up, answer.phone_masked) == (StepUpChannel.ISSUER, "")
    assert tsp_world.sms.outbox == []
    assert answer.token is not None
    assert tsp_world.tsp.confirm_step_up(answer.token.id, "123456").status is (
        StepUpStatus.NOT_PENDING
    )
    change = tsp_world.tsp.on_issuer_event(answer.token.vault_ref, TokenEvent.ACTIVATE)
    assert [t.state for t in change.changed] == [TokenState.ACTIVE]


def test_provisioning_logs_no_card_number(
    tsp_world: TspWorld, caplog: pytest.LogCaptureFixture
) -> None:
    card = tsp_world.card()
    with caplog.at_level(logging.DEBUG, logger="milletpay"):
        token = tsp_world.active_token(card)
        tsp_world.provision(card, cvn2=_wrong(card.cvn2)[-3:], domain=TokenDomain.ECOMMERCE)
    assert token.number in caplog.text
    assert card.pan not in caplog.text and card.cvn2 not in caplog.text.split()


def test_concurrent_wrong_codes_each_spend_a_try(tsp_world: TspWorld) -> None:
    answer = tsp_world.provision(tsp_world.card(), phone=OTHER_PHONE)
    assert answer.token is not None
    token_id, wrong = answer.token.id, _wrong(tsp_world.last_code())
    with ThreadPoolExecutor(max_workers=STEP_UP_ATTEMPTS_MAX) as pool:
        tries = list(
            pool.map(
                lambda _i: tsp_world.tsp.confirm_step_up(token_id, wrong),
                range(STEP_UP_ATTEMPTS_MAX),
            )
        )
    statuses = sorted(t.status for t in tries)
    assert statuses.count(StepUpStatus.ATTEMPTS_EXCEEDED) == 1
    assert statuses.count(StepUpStatus.CODE_WRONG) == STEP_UP_ATTEMPTS_MAX - 1
    assert tsp_world.tsp.token(token_id).state is TokenState.DELETED
