"""Binding phones: WebAuthn registration, the device limit, unbinding."""

from __future__ import annotations

import pytest

from milletpay.identity.devices import (
    CHALLENGE_TTL_S,
    DEVICES_PER_USER_MAX,
    AttestationInvalid,
    ChallengeExpired,
    ChallengeUsed,
    DeviceAlreadyBound,
    DeviceInvalid,
    DeviceLimitReached,
    DeviceNotFound,
    DeviceStatus,
)

from .world import FINGER, ORIGIN, World


def test_binding_stores_the_device_and_its_credential(world: World) -> None:
    phone = world.phone()
    device = world.bind(phone)
    assert device.device_id == "phone-1"
    assert device.model == "Millet 14"
    assert device.status is DeviceStatus.ACTIVE
    assert world.registry.list_devices(world.user_id) == [device]
    assert world.registry.credential_of(world.user_id, "phone-1") == device.credential_id


def test_binding_without_a_fingerprint_match_gets_no_credential(world: World) -> None:
    phone = world.phone()
    options = world.registry.begin_binding(world.user_id, phone.device_id, phone.model)
    assert not phone.touch("left index")
    assert phone.create_credential(options, ORIGIN) is None


def test_binding_from_a_foreign_origin_is_refused(world: World) -> None:
    phone = world.phone()
    options = world.registry.begin_binding(world.user_id, phone.device_id, phone.model)
    phone.touch(FINGER)
    attestation = phone.create_credential(options, "https://evil.example")
    assert attestation is not None
    with pytest.raises(AttestationInvalid):
        world.registry.finish_binding(world.user_id, attestation)
    assert world.registry.list_devices(world.user_id) == []


def test_a_binding_challenge_expires(world: World) -> None:
    phone = world.phone()
    options = world.registry.begin_binding(world.user_id, phone.device_id, phone.model)
    world.clock.advance(seconds=CHALLENGE_TTL_S)
    phone.touch(FINGER)
    attestation = phone.create_credential(options, ORIGIN)
    assert attestation is not None
    with pytest.raises(ChallengeExpired):
        world.registry.finish_binding(world.user_id, attestation)


def test_a_binding_challenge_is_single_use(world: World) -> None:
    phone = world.phone()
    options = world.registry.begin_binding(world.user_id, phone.device_id, phone.model)
    phone.touch(FINGER)
    attestation = phone.create_credential(options, ORIGIN)
    assert attestation is not None
    world.registry.finish_binding(world.user_id, attestation)
    with pytest.raises(ChallengeUsed):
        world.registry.finish_binding(world.user_id, attestation)


def test_device_limit_allows_the_last_device_and_refuses_one_more(world: World) -> None:
    for n in range(DEVICES_PER_USER_MAX):
        world.bind(world.phone(f"phone-{n}"))
    assert len(world.registry.list_devices(world.user_id)) == DEVICES_PER_USER_MAX
    with pytest.raises(DeviceLimitReached) as refused:
        world.registry.begin_binding(world.user_id, "phone-extra", "Millet 14")
    assert refused.value.code == "device_limit_reached"
    assert str(DEVICES_PER_USER_MAX) in refused.value.message


def test_device_limit_is_checked_again_when_binding_finishes(world: World) -> None:
    extra = world.phone("phone-extra")
    options = world.registry.begin_binding(world.user_id, extra.device_id, extra.model)
    for n in range(DEVICES_PER_USER_MAX):
        world.bind(world.phone(f"phone-{n}"))
    extra.touch(FINGER)
    attestation = extra.create_credential(options, ORIGIN)
    assert attestation is not None
    with pytest.raises(DeviceLimitReached):
        world.registry.finish_binding(world.user_id, attestation)


def test_unbinding_frees_a_place_under_the_limit(world: World) -> None:
    for n in range(DEVICES_PER_USER_MAX):
        world.bind(world.phone(f"phone-{n}"))
    world.registry.unbind(world.user_id, "phone-0")
    world.bind(world.phone("phone-new"))
    assert len(world.registry.list_devices(world.user_id)) == DEVICES_PER_USER_MAX


def test_unbinding_marks_the_device_unbound_and_keeps_its_record(world: World) -> None:
    world.bind(world.phone())
    world.clock.advance(seconds=5)
    unbound = world.registry.unbind(world.user_id, "phone-1")
    assert unbound.status is DeviceStatus.UNBOUND
    assert unbound.unbound_at_ns == world.clock.now_ns()
    assert world.registry.list_devices(world.user_id) == []
    assert world.registry.list_devices(world.user_id, include_unbound=True) == [unbound]
    with pytest.raises(DeviceNotFound):
        world.registry.unbind(world.user_id, "phone-1")


def test_a_phone_bound_to_one_user_cannot_be_bound_again(world: World) -> None:
    world.bind(world.phone())
    other = world.identity.register("13900139000", "Li Si", "11010519491231002X")
    with pytest.raises(DeviceAlreadyBound):
        world.registry.begin_binding(other.id, "phone-1", "Millet 14")
    world.registry.unbind(world.user_id, "phone-1")
    assert world.bind(world.phone(), other.id).user_id == other.id


@pytest.mark.parametrize("device_id", ["", "   ", "x" * 65, "bad\nid"])
def test_a_bad_device_id_is_refused_before_anything_is_stored(world: World, device_id: str) -> None:
    with pytest.raises(DeviceInvalid):
        world.registry.begin_binding(world.user_id, device_id, "Millet 14")
