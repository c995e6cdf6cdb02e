"""Partners: a registered payment provider may use the same phone key for its payments."""

from __future__ import annotations

import pytest

from milletpay.core.money import Money
from milletpay.identity.quickpay import (
    PARTNERS,
    AssertionInvalid,
    PartnerUnknown,
    Payment,
)
from milletpay.sim.phone import SimulatedPhone

from .world import FINGER, ORIGIN, World

ALIPAY = "alipay.example"
ALIPAY_ORIGIN = PARTNERS[ALIPAY].origins[0]
TICKET = Payment("alipay-7781", "merchant:cinema", Money(8_000, "CNY"))


@pytest.fixture
def phone(world: World) -> SimulatedPhone:
    phone = world.phone()
    world.bind(phone)
    return phone


def _partner_assertion(world: World, phone: SimulatedPhone, origin: str) -> str:
    options = world.quickpay.begin_payment(
        world.user_id, phone.device_id, TICKET, partner_id=ALIPAY
    )
    phone.touch(FINGER)
    assertion = phone.get_assertion(options, origin)
    assert assertion is not None
    return assertion


def test_a_registered_partner_gets_an_approval_from_the_same_credential(
    world: World, phone: SimulatedPhone
) -> None:
    approval = world.quickpay.finish_payment(
        world.user_id, TICKET, _partner_assertion(world, phone, ALIPAY_ORIGIN)
    )
    assert approval.partner_id == ALIPAY
    assert approval.credential_id == world.registry.credential_of(world.user_id, "phone-1")


def test_an_unknown_partner_is_refused(world: World, phone: SimulatedPhone) -> None:
    with pytest.raises(PartnerUnknown) as refused:
        world.quickpay.begin_payment(
            world.user_id, phone.device_id, TICKET, partner_id="unknown-pay.example"
        )
    assert refused.value.code == "partner_unknown"


def test_a_partner_challenge_answered_from_another_origin_is_refused(
    world: World, phone: SimulatedPhone
) -> None:
    assertion = _partner_assertion(world, phone, "https://unknown-pay.example")
    with pytest.raises(AssertionInvalid):
        world.quickpay.finish_payment(world.user_id, TICKET, assertion)


def test_a_millet_challenge_answered_from_a_partner_origin_is_refused(
    world: World, phone: SimulatedPhone
) -> None:
    options = world.quickpay.begin_payment(world.user_id, phone.device_id, TICKET)
    phone.touch(FINGER)
    assertion = phone.get_assertion(options, ALIPAY_ORIGIN)
    assert assertion is not None
    with pytest.raises(AssertionInvalid):
        world.quickpay.finish_payment(world.user_id, TICKET, assertion)


def test_the_partner_list_is_the_allow_list(world: World) -> None:
    assert world.quickpay.origins_for(None) == (ORIGIN,)
    assert world.quickpay.origins_for(ALIPAY) == ("https://alipay.example",)
    with pytest.raises(PartnerUnknown):
        world.quickpay.origins_for("unknown-pay.example")
