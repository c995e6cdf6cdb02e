"""The user endpoints: register, sign in with a texted code, KYC steps, PIN, devices.

Every /v1/me path acts on the signed-in user only; the tests also try to reach another
user's device and expect 404, and try bad and expired tokens and expect 401.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from milletpay.api import create_app
from milletpay.api.sessions import SESSION_TTL_S
from milletpay.core.clock import ManualClock
from milletpay.core.keyring import KeyRing
from milletpay.identity import PIN_HASHING_FAST, SimulatedSms
from milletpay.sim.phone import SimulatedPhone

from .members import national_id

ORIGIN = "https://pay.millet.example"


@dataclass
class World:
    client: TestClient
    clock: ManualClock
    sms: SimulatedSms

    def register(self, phone: str, sequence: int) -> dict[str, object]:
        answer = self.client.post(
            "/v1/users",
            json={"phone": phone, "real_name": "Li Wei", "national_id": national_id(sequence)},
        )
        assert answer.status_code == 201, answer.text
        return dict(answer.json())

    def sign_in(self, phone: str) -> dict[str, str]:
        assert self.client.post("/v1/sessions/codes", json={"phone": phone}).status_code == 202
        code = self.sms.messages_to("+86" + phone[-11:])[-1].text.split("code is ")[1][:6]
        answer = self.client.post("/v1/sessions", json={"phone": phone, "code": code})
        assert answer.status_code == 201, answer.text
        return {"Authorization": f"Bearer {answer.json()['token']}"}


@pytest.fixture
def world(database_url: str) -> Iterator[World]:
    clock, sms = ManualClock(), SimulatedSms()
    app = create_app(
        database_url,
        clock=clock,
        keyring=KeyRing.generate(),
        sms=sms,
        pin_hashing=PIN_HASHING_FAST,
    )
    with TestClient(app) as client:
        yield World(client, clock, sms)


def test_a_user_registers_signs_in_and_sees_a_masked_id(world: World) -> None:
    registered = world.register("13800138000", 1)
    assert registered["phone"] == "+8613800138000"
    assert registered["kyc_tier"] is None
    national = str(registered["national_id"])
    assert national.startswith("1") and "*" in national
    me = world.client.get("/v1/me", headers=world.sign_in("13800138000"))
    assert me.status_code == 200
    assert me.json()["id"] == registered["id"]


def test_registration_errors_name_what_is_wrong(world: World) -> None:
    valid = national_id(1)
    wrong_check_digit = valid[:-1] + ("0" if valid[-1] != "0" else "1")
    bad_id = world.client.post(
        "/v1/users",
        json={"phone": "13800138000", "real_name": "Li Wei", "national_id": wrong_check_digit},
    )
    assert bad_id.status_code == 400
    assert bad_id.json()["error"]["code"] == "national_id_invalid"
    assert "checksum" in bad_id.json()["error"]["message"]
    world.register("13800138000", 1)
    again = world.client.post(
        "/v1/users",
        json={"phone": "13800138000", "real_name": "Wang Fang", "national_id": national_id(2)},
    )
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "phone_taken"
    missing = world.client.post("/v1/users", json={"phone": "13800138001"})
    assert missing.status_code == 422
    assert missing.json()["error"]["field"] == "real_name"


def test_sign_in_with_a_wrong_code_is_refused(world: World) -> None:
    world.register("13800138000", 1)
    world.client.post("/v1/sessions/codes", json={"phone": "13800138000"})
    wrong = world.client.post("/v1/sessions", json={"phone": "13800138000", "code": "000000"})
    assert wrong.status_code == 401
    assert wrong.json()["error"]["field"] == "code"
    unknown = world.client.post("/v1/sessions", json={"phone": "13900139000", "code": "123456"})
    assert unknown.status_code == 401


def test_an_unregistered_phone_gets_the_same_answer_and_no_text(world: World) -> None:
    answer = world.client.post("/v1/sessions/codes", json={"phone": "13900139000"})
    assert answer.status_code == 202
    assert world.sms.outbox == []


@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        (None, "unauthenticated"),
        ("Basic abc", "unauthenticated"),
        ("Bearer not-a-token", "session_invalid"),
        ("Bearer AAAA.BBBB", "session_invalid"),
    ],
)
def test_me_needs_a_valid_session(world: World, authorization: str | None, code: str) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    answer = world.client.get("/v1/me", headers=headers)
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == code


def test_a_session_expires(world: World) -> None:
    world.register("13800138000", 1)
    headers = world.sign_in("13800138000")
    world.clock.advance(seconds=SESSION_TTL_S)
    answer = world.client.get("/v1/me", headers=headers)
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "session_expired"


def test_a_forged_token_for_another_user_is_refused(world: World) -> None:
    world.register("13800138000", 1)
    headers = world.sign_in("13800138000")
    payload, mac = headers["Authorization"].removeprefix("Bearer ").split(".")
    forged = ("B" if payload[0] != "B" else "C") + payload[1:]
    answer = world.client.get("/v1/me", headers={"Authorization": f"Bearer {forged}.{mac}"})
    assert answer.status_code == 401


def test_kyc_steps_raise_the_tier(world: World) -> None:
    world.register("13800138000", 1)
    headers = world.sign_in("13800138000")
    tiers = []
    for channel in ("bank_card", "public_security_id", "telecom"):
        answer = world.client.post(
            "/v1/me/kyc/channels", json={"channel": channel}, headers=headers
        )
        assert answer.status_code == 201
        tiers.append(answer.json()["kyc_tier"])
    assert tiers[0] != tiers[-1] and tiers[0] is not None
    unknown = world.client.post(
        "/v1/me/kyc/channels", json={"channel": "horoscope"}, headers=headers
    )
    assert unknown.status_code == 400
    assert unknown.json()["error"]["code"] == "kyc_channel_unknown"


def test_the_pin_locks_after_five_wrong_tries(world: World) -> None:
    world.register("13800138000", 1)
    headers = world.sign_in("13800138000")
    assert (
        world.client.put("/v1/me/pin", json={"pin": "258014"}, headers=headers).status_code == 204
    )
    ok = world.client.post("/v1/me/pin/checks", json={"pin": "258014"}, headers=headers)
    assert ok.json()["status"] == "ok"
    codes = [
        world.client.post("/v1/me/pin/checks", json={"pin": "999999"}, headers=headers).json()[
            "error"
        ]["code"]
        for _ in range(5)
    ]
    assert codes == ["pin_wrong"] * 4 + ["pin_locked"]
    locked = world.client.post("/v1/me/pin/checks", json={"pin": "258014"}, headers=headers)
    assert locked.status_code == 403
    assert locked.json()["error"]["code"] == "pin_locked"


def _bind(world: World, headers: dict[str, str], device_id: str) -> dict[str, object]:
    phone = SimulatedPhone(device_id, "Millet 14", world.clock)
    phone.enroll_fingerprint("right thumb")
    options = world.client.post(
        "/v1/me/devices/bindings",
        json={"device_id": device_id, "model": "Millet 14"},
        headers=headers,
    )
    assert options.status_code == 201, options.text
    assert phone.touch("right thumb")
    credential = phone.create_credential(json.dumps(options.json()), ORIGIN)
    assert credential is not None
    bound = world.client.post(
        "/v1/me/devices", json={"credential": json.loads(credential)}, headers=headers
    )
    assert bound.status_code == 201, bound.text
    return dict(bound.json())


def test_a_phone_is_bound_listed_and_unbound(world: World) -> None:
    world.register("13800138000", 1)
    headers = world.sign_in("13800138000")
    assert _bind(world, headers, "phone-a")["status"] == "active"
    listed = world.client.get("/v1/me/devices", headers=headers).json()
    assert [d["device_id"] for d in listed] == ["phone-a"]
    unbound = world.client.delete("/v1/me/devices/phone-a", headers=headers)
    assert unbound.status_code == 200
    assert unbound.json()["status"] == "unbound"
    assert world.client.get("/v1/me/devices", headers=headers).json() == []


def test_a_user_cannot_unbind_another_users_phone(world: World) -> None:
    world.register("13800138000", 1)
    world.register("13900139000", 2)
    owner = world.sign_in("13800138000")
    other = world.sign_in("13900139000")
    _bind(world, owner, "phone-a")
    answer = world.client.delete("/v1/me/devices/phone-a", headers=other)
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "device_not_found"
    assert [d["status"] for d in world.client.get("/v1/me/devices", headers=owner).json()] == [
        "active"
    ]
