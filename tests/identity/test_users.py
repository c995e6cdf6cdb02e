"""Registration, KYC channels and tiers, one Class III account per ID number (both engines)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from milletpay.identity import (
    TIERS,
    Channel,
    ChannelUnknown,
    ClassIIIAlreadyHeld,
    IdentityService,
    NationalIdInvalid,
    PhoneInvalid,
    PhoneTaken,
    RealNameInvalid,
    UserNotFound,
)
from milletpay.identity.tables import kyc_verifications, users

from .conftest import GB_11643_EXAMPLE, STDNUM_EXAMPLE

CLASS_I, CLASS_II, CLASS_III = TIERS
FIVE_REMOTE = (
    Channel.BANK_CARD,
    Channel.PUBLIC_SECURITY_ID,
    Channel.SOCIAL_SECURITY,
    Channel.TELECOM,
    Channel.TAX,
)


def _engine(service: IdentityService) -> sa.Engine:
    return service._engine


def test_register_normalizes_the_phone_and_masks_the_id(service: IdentityService) -> None:
    user = service.register("138 1234 5678", "张三", GB_11643_EXAMPLE)
    assert user.phone == "+8613812345678"
    assert user.national_id_masked == "1" + "*" * 16 + "X"
    assert service.get_user(user.id) == user
    assert service.current_tier(user.id) is None


def test_national_id_and_real_name_are_stored_sealed(service: IdentityService) -> None:
    user = service.register("13812345678", "张三", GB_11643_EXAMPLE)
    with _engine(service).connect() as conn:
        row = conn.execute(sa.select(users)).one()
    stored = b"".join(v for v in row if isinstance(v, bytes))
    assert GB_11643_EXAMPLE.encode() not in stored
    assert "张三".encode() not in stored
    assert service.national_id_of(user.id) == GB_11643_EXAMPLE


def test_duplicate_phone_is_refused_with_phone_taken(service: IdentityService) -> None:
    service.register("13812345678", "张三", GB_11643_EXAMPLE)
    with pytest.raises(PhoneTaken) as refused:
        service.register("+86 138-1234-5678", "李四", STDNUM_EXAMPLE)
    assert refused.value.code == "phone_taken"
    assert "5678" in refused.value.message and "13812345678" not in refused.value.message


@pytest.mark.parametrize(
    ("phone", "name", "number", "error"),
    [
        ("1381234567", "张三", GB_11643_EXAMPLE, PhoneInvalid),
        ("13812345678", "  ", GB_11643_EXAMPLE, RealNameInvalid),
        ("13812345678", "张三", GB_11643_EXAMPLE[:-1] + "3", NationalIdInvalid),
    ],
)
def test_bad_registration_is_refused_and_stores_nothing(
    service: IdentityService, phone: str, name: str, number: str, error: type[Exception]
) -> None:
    with pytest.raises(error):
        service.register(phone, name, number)
    with _engine(service).connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(users)).scalar_one() == 0


def test_tiers_rise_with_verified_channels(service: IdentityService) -> None:
    user = service.register("13812345678", "张三", GB_11643_EXAMPLE)
    reached = [service.verify_channel(user.id, channel) for channel in FIVE_REMOTE]
    assert reached == [CLASS_I, CLASS_I, CLASS_II, CLASS_II, CLASS_III]
    assert service.current_tier(user.id) is CLASS_III


def test_each_channel_counts_once(service: IdentityService) -> None:
    user = service.register("13812345678", "张三", GB_11643_EXAMPLE)
    for _ in range(3):
        assert service.verify_channel(user.id, "bank_card") is CLASS_I
    assert service.verified_channels(user.id) == frozenset({Channel.BANK_CARD})
    with _engine(service).connect() as conn:
        count = sa.select(sa.func.count()).select_from(kyc_verifications)
        assert conn.execute(count).scalar_one() == 1


def test_face_to_face_reaches_class_iii_alone(service: IdentityService) -> None:
    user = service.register("13812345678", "张三", GB_11643_EXAMPLE)
    assert service.verify_channel(user.id, Channel.FACE_TO_FACE) is CLASS_III


def test_unknown_channel_is_refused_listing_the_known_ones(service: IdentityService) -> None:
    user = service.register("13812345678", "张三", GB_11643_EXAMPLE)
    with pytest.raises(ChannelUnknown, match="bank_card"):
        service.verify_channel(user.id, "carrier_pigeon")


def test_unknown_user_is_refused(service: IdentityService) -> None:
    with pytest.raises(UserNotFound):
        service.verify_channel(12345, Channel.BANK_CARD)
    with pytest.raises(UserNotFound):
        service.get_user(12345)
    with pytest.raises(UserNotFound):
        service.current_tier(12345)


def test_one_id_number_may_have_several_accounts_below_class_iii(service: IdentityService) -> None:
    first = service.register("13812345678", "张三", GB_11643_EXAMPLE)
    second = service.register("13912345678", "张三", GB_11643_EXAMPLE)
    for user in (first, second):
        for channel in FIVE_REMOTE[:4]:
            service.verify_channel(user.id, channel)
    assert service.current_tier(first.id) is service.current_tier(second.id) is CLASS_II


def test_second_account_reaching_class_iii_with_the_same_id_is_refused(
    service: IdentityService,
) -> None:
    first = service.register("13812345678", "张三", GB_11643_EXAMPLE)
    second = service.register("13912345678", "张三", GB_11643_EXAMPLE)
    assert service.verify_channel(first.id, Channel.FACE_TO_FACE) is CLASS_III
    for channel in FIVE_REMOTE[:4]:
        service.verify_channel(second.id, channel)
    with pytest.raises(ClassIIIAlreadyHeld) as refused:
        service.verify_channel(second.id, FIVE_REMOTE[4])
    assert refused.value.code == "class_iii_already_held"
    assert service.current_tier(second.id) is CLASS_II
    assert FIVE_REMOTE[4] not in service.verified_channels(second.id)
    with pytest.raises(ClassIIIAlreadyHeld):
        service.verify_channel(second.id, Channel.FACE_TO_FACE)


def test_class_iii_is_per_id_number_not_per_name(service: IdentityService) -> None:
    first = service.register("13812345678", "张三", GB_11643_EXAMPLE)
    other = service.register("13912345678", "张三", STDNUM_EXAMPLE)
    assert service.verify_channel(first.id, Channel.FACE_TO_FACE) is CLASS_III
    assert service.verify_channel(other.id, Channel.FACE_TO_FACE) is CLASS_III


def test_a_class_iii_user_verifying_more_channels_stays_class_iii(service: IdentityService) -> None:
    user = service.register("13812345678", "张三", GB_11643_EXAMPLE)
    service.verify_channel(user.id, Channel.FACE_TO_FACE)
    assert service.verify_channel(user.id, Channel.BANK_CARD) is CLASS_III


def test_concurrent_claims_of_class_iii_for_one_id_let_exactly_one_win(
    service: IdentityService,
) -> None:
    claimants = [service.register(f"1391234567{i}", "张三", GB_11643_EXAMPLE).id for i in range(4)]
    barrier = threading.Barrier(len(claimants))

    def claim(user_id: int) -> str:
        barrier.wait()
        try:
            service.verify_channel(user_id, Channel.FACE_TO_FACE)
        except ClassIIIAlreadyHeld as refused:
            return refused.code
        return "ok"

    with ThreadPoolExecutor(len(claimants)) as pool:
        answers = sorted(pool.map(claim, claimants))
    assert answers == ["class_iii_already_held"] * 3 + ["ok"]
    tiers = [service.current_tier(user_id) for user_id in claimants]
    assert tiers.count(CLASS_III) == 1 and tiers.count(None) == 3
