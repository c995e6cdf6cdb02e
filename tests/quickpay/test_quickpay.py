"""Quick pay: a payment approved by a fingerprint on a bound phone (WebAuthn assertion)."""

from __future__ import annotations

import pytest

from milletpay.core.money import Money
from milletpay.identity.devices import (
    CHALLENGE_TTL_S,
    CHALLENGES_LIVE_PER_USER_MAX,
    ChallengeExpired,
    ChallengeLimitReached,
    ChallengeUnknown,
    ChallengeUsed,
    DeviceNotFound,
    ResponseMalformed,
)
from milletpay.identity.quickpay import (
    AssertionInvalid,
    CredentialRevoked,
    Payment,
    PaymentInvalid,
    PaymentMismatch,
    SignCountNotIncreased,
    UserVerificationMissing,
)
from milletpay.sim.phone import TOUCH_WINDOW_S, SimulatedPhone

from .world import FINGER, ORIGIN, World

COFFEE = Payment("pay-001", "merchant:coffee-shop", Money(3_500, "CNY"))
LAPTOP = Payment("pay-002", "merchant:laptop-store", Money(899_900, "CNY"))


@pytest.fixture
def phone(world: World) -> SimulatedPhone:
    phone = world.phone()
    world.bind(phone)
    return phone


def _assertion(world: World, phone: SimulatedPhone, payment: Payment) -> str:
    options = world.quickpay.begin_payment(world.user_id, phone.device_id, payment)
    assert phone.touch(FINGER)
    assertion = phone.get_assertion(options, ORIGIN)
    assert assertion is not None
    return assertion


def test_a_fingerprint_on_a_bound_phone_approves_the_payment(
    world: World, phone: SimulatedPhone
) -> None:
    approval = world.quickpay.finish_payment(
        world.user_id, COFFEE, _assertion(world, phone, COFFEE)
    )
    assert approval.payment == COFFEE
    assert approval.device_id == phone.device_id
    assert approval.credential_id == world.registry.credential_of(world.user_id, "phone-1")
    assert approval.sign_count == 1
    assert approval.partner_id is None
    second = world.quickpay.finish_payment(world.user_id, LAPTOP, _assertion(world, phone, LAPTOP))
    assert second.sign_count == 2


def test_an_assertion_without_user_verification_is_refused(
    world: World, phone: SimulatedPhone
) -> None:
    options = world.quickpay.begin_payment(world.user_id, phone.device_id, COFFEE)
    assertion = phone.get_assertion(options, ORIGIN, verify_user=False)
    assert assertion is not None
    with pytest.raises(UserVerificationMissing) as refused:
        world.quickpay.finish_payment(world.user_id, COFFEE, assertion)
    assert refused.value.code == "user_verification_missing"


def test_a_wrong_finger_gets_no_assertion(world: World, phone: SimulatedPhone) -> None:
    options = world.quickpay.begin_payment(world.user_id, phone.device_id, COFFEE)
    assert not phone.touch("left index")
    assert phone.get_assertion(options, ORIGIN) is None


def test_a_wrong_finger_cancels_an_earlier_match(world: World, phone: SimulatedPhone) -> None:
    options = world.quickpay.begin_payment(world.user_id, phone.device_id, COFFEE)
    phone.touch(FINGER)
    phone.touch("left index")
    assert phone.get_assertion(options, ORIGIN) is None


def test_no_touch_gets_no_assertion(world: World, phone: SimulatedPhone) -> None:
    options = world.quickpay.begin_payment(world.user_id, phone.device_id, COFFEE)
    assert phone.get_assertion(options, ORIGIN) is None


def test_a_touch_older_than_the_window_gets_no_assertion(
    world: World, phone: SimulatedPhone
) -> None:
    options = world.quickpay.begin_payment(world.user_id, phone.device_id, COFFEE)
    phone.touch(FINGER)
    world.clock.advance(seconds=TOUCH_WINDOW_S + 1)
    assert phone.get_assertion(options, ORIGIN) is None


def test_one_touch_signs_once(world: World, phone: SimulatedPhone) -> None:
    options = world.quickpay.begin_payment(world.user_id, phone.device_id, COFFEE)
    phone.touch(FINGER)
    assert phone.get_assertion(options, ORIGIN) is not None
    assert phone.get_assertion(options, ORIGIN) is None


def test_an_expired_challenge_is_refused(world: World, phone: SimulatedPhone) -> None:
    options = world.quickpay.begin_payment(world.user_id, phone.device_id, COFFEE)
    world.clock.advance(seconds=CHALLENGE_TTL_S)
    phone.touch(FINGER)
    assertion = phone.get_assertion(options, ORIGIN)
    assert assertion is not None
    with pytest.raises(ChallengeExpired):
        world.quickpay.finish_payment(world.user_id, COFFEE, assertion)


def test_a_challenge_answered_just_before_expiry_is_accepted(
    world: World, phone: SimulatedPhone
) -> None:
    options = world.quickpay.begin_payment(world.user_id, phone.device_id, COFFEE)
    world.clock.advance(seconds=CHALLENGE_TTL_S - 1)
    phone.touch(FINGER)
    assertion = phone.get_assertion(options, ORIGIN)
    assert assertion is not None
    assert world.quickpay.finish_payment(world.user_id, COFFEE, assertion).payment == COFFEE


def test_a_replayed_assertion_is_refused(world: World, phone: SimulatedPhone) -> None:
    assertion = _assertion(world, phone, COFFEE)
    world.quickpay.finish_payment(world.user_id, COFFEE, assertion)
    with pytest.raises(ChallengeUsed):
        world.quickpay.finish_payment(world.user_id, COFFEE, assertion)


def test_a_challenge_cannot_be_answered_twice(world: World, phone: SimulatedPhone) -> None:
    options = world.quickpay.begin_payment(world.user_id, phone.device_id, COFFEE)
    phone.touch(FINGER)
    first = phone.get_assertion(options, ORIGIN)
    phone.touch(FINGER)
    second = phone.get_assertion(options, ORIGIN)
    assert first is not None and second is not None and first != second
    world.quickpay.finish_payment(world.user_id, COFFEE, first)
    with pytest.raises(ChallengeUsed):
        world.quickpay.finish_payment(world.user_id, COFFEE, second)


def test_an_assertion_for_payment_a_cannot_approve_payment_b(
    world: World, phone: SimulatedPhone
) -> None:
    assertion = _assertion(world, phone, COFFEE)
    with pytest.raises(PaymentMismatch):
        world.quickpay.finish_payment(world.user_id, LAPTOP, assertion)
    # the attempt spent the challenge: the assertion approves nothing any more
    with pytest.raises(ChallengeUsed):
        world.quickpay.finish_payment(world.user_id, COFFEE, assertion)


def test_a_changed_amount_is_another_payment(world: World, phone: SimulatedPhone) -> None:
    assertion = _assertion(world, phone, COFFEE)
    dearer = Payment(COFFEE.payment_id, COFFEE.payee, Money(35_000, "CNY"))
    with pytest.raises(PaymentMismatch):
        world.quickpay.finish_payment(world.user_id, dearer, assertion)


def test_a_counter_that_does_not_move_forward_is_refused(
    world: World, phone: SimulatedPhone
) -> None:
    older = _assertion(world, phone, COFFEE)  # counter 1
    newer = _assertion(world, phone, LAPTOP)  # counter 2
    world.quickpay.finish_payment(world.user_id, LAPTOP, newer)
    with pytest.raises(SignCountNotIncreased):
        world.quickpay.finish_payment(world.user_id, COFFEE, older)


def test_an_unbound_devices_credential_is_refused(world: World, phone: SimulatedPhone) -> None:
    assertion = _assertion(world, phone, COFFEE)
    world.registry.unbind(world.user_id, phone.device_id)
    with pytest.raises(CredentialRevoked) as refused:
        world.quickpay.finish_payment(world.user_id, COFFEE, assertion)
    assert refused.value.code == "credential_revoked"


def test_an_unbound_device_gets_no_payment_challenge(world: World, phone: SimulatedPhone) -> None:
    world.registry.unbind(world.user_id, phone.device_id)
    with pytest.raises(DeviceNotFound):
        world.quickpay.begin_payment(world.user_id, phone.device_id, COFFEE)


def test_another_users_challenge_is_unknown_to_this_user(
    world: World, phone: SimulatedPhone
) -> None:
    assertion = _assertion(world, phone, COFFEE)
    other = world.identity.register("13900139000", "Li Si", "11010519491231002X")
    with pytest.raises(ChallengeUnknown):
        world.quickpay.finish_payment(other.id, COFFEE, assertion)


def test_a_tampered_signature_is_refused(world: World, phone: SimulatedPhone) -> None:
    import json

    assertion = json.loads(_assertion(world, phone, COFFEE))
    signature = assertion["response"]["signature"]
    flipped = "A" if signature[10] != "A" else "B"
    assertion["response"]["signature"] = signature[:10] + flipped + signature[11:]
    with pytest.raises(AssertionInvalid):
        world.quickpay.finish_payment(world.user_id, COFFEE, json.dumps(assertion))


@pytest.mark.parametrize(
    ("payment_id", "payee", "amount_minor"),
    [("", "shop", 100), ("p", "", 100), ("p", "shop", 0), ("p", "shop", -1), ("p\n", "shop", 1)],
)
def test_a_bad_payment_is_refused_when_made(payment_id: str, payee: str, amount_minor: int) -> None:
    with pytest.raises(PaymentInvalid):
        Payment(payment_id, payee, Money(amount_minor, "CNY"))


def test_open_challenges_are_limited_per_user(world: World, phone: SimulatedPhone) -> None:
    for n in range(CHALLENGES_LIVE_PER_USER_MAX):
        payment = Payment(f"pay-{n}", "merchant:coffee-shop", Money(100, "CNY"))
        world.quickpay.begin_payment(world.user_id, phone.device_id, payment)
    with pytest.raises(ChallengeLimitReached):
        world.quickpay.begin_payment(world.user_id, phone.device_id, COFFEE)
    world.clock.advance(seconds=CHALLENGE_TTL_S)
    world.quickpay.begin_payment(world.user_id, phone.device_id, COFFEE)


def test_purging_deletes_only_expired_challenges(world: World, phone: SimulatedPhone) -> None:
    world.quickpay.begin_payment(world.user_id, phone.device_id, COFFEE)
    world.clock.advance(seconds=CHALLENGE_TTL_S)
    live = _assertion(world, phone, LAPTOP)
    assert world.registry.purge_challenges() == 2  # the binding's and COFFEE's
    assert world.registry.purge_challenges() == 0
    assert world.quickpay.finish_payment(world.user_id, LAPTOP, live).payment == LAPTOP


@pytest.mark.parametrize(
    "garbage", ["", "[]", '{"response": {}}', '{"response": {"clientDataJSON": "!!"}}']
)
def test_an_unreadable_response_is_refused(world: World, garbage: str) -> None:
    with pytest.raises(ResponseMalformed):
        world.quickpay.finish_payment(world.user_id, COFFEE, garbage)
