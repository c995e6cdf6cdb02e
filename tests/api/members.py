"""Fully set-up Millet Pay users for API tests, made through the API itself.

`sign_up` registers a user, signs in with the texted code, verifies a KYC channel, sets
the PIN, opens the wallet, links a bank account (opened at the simulated bank in the
user's real name), tops the wallet up and binds a simulated phone.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from fastapi.testclient import TestClient
from stdnum.cn import ric

from milletpay.core.clock import ManualClock
from milletpay.identity import SimulatedSms
from milletpay.sim.phone import SimulatedPhone
from milletpay.wallet import SimulatedBankGateway

BANK = "ICBC"
PIN = "135790"
ORIGIN = "https://pay.millet.example"
FINGER = "right thumb"
#: What every member's bank account holds when it is opened, in fen.
BANK_OPENING_FEN = 10_000_000
#: What `sign_up` tops the wallet up with, in fen.
TOP_UP_FEN = 50_000


def national_id(sequence: int) -> str:
    """A resident ID number with a valid check digit (GB 11643 MOD 11-2, via stdnum)."""
    body = f"11010519900101{sequence:03d}"
    return body + ric.calc_check_digit(body + "0")


@dataclass
class Member:
    sequence: int
    phone: str
    user_id: str
    headers: dict[str, str]
    bank_account_id: str
    account_number: str
    device: SimulatedPhone
    top_up_operation_id: str


@dataclass
class Platform:
    """The app's client and the simulated world around it."""

    client: TestClient
    clock: ManualClock
    sms: SimulatedSms
    bank: SimulatedBankGateway

    def ok(self, method: str, path: str, member: Member | None, **kwargs: Any) -> Any:
        headers = dict(member.headers) if member is not None else {}
        headers.update(kwargs.pop("headers", {}))
        answer = self.client.request(method, path, headers=headers, **kwargs)
        assert answer.status_code < 300, f"{method} {path}: {answer.status_code} {answer.text}"
        return answer.json() if answer.content else None

    def sign_in(self, phone: str) -> dict[str, str]:
        self.ok("POST", "/v1/sessions/codes", None, json={"phone": phone})
        code = self.sms.messages_to("+86" + phone)[-1].text.split("code is ")[1][:6]
        token = self.ok("POST", "/v1/sessions", None, json={"phone": phone, "code": code})
        return {"Authorization": f"Bearer {token['token']}"}

    def bind_options(self, member: Member | dict[str, str], device_id: str) -> Any:
        headers = member if isinstance(member, dict) else member.headers
        body = {"device_id": device_id, "model": "Millet 14"}
        return self.ok("POST", "/v1/me/devices/bindings", None, json=body, headers=headers)

    def bind(self, headers: dict[str, str], device_id: str) -> SimulatedPhone:
        phone = SimulatedPhone(device_id, "Millet 14", self.clock)
        phone.enroll_fingerprint(FINGER)
        options = self.bind_options(headers, device_id)
        assert phone.touch(FINGER)
        credential = phone.create_credential(json.dumps(options), ORIGIN)
        assert credential is not None
        body = {"credential": json.loads(credential)}
        self.ok("POST", "/v1/me/devices", None, json=body, headers=headers)
        return phone

    def assertion(self, member: Member, payment: dict[str, Any]) -> Any:
        """`member`'s phone approves `payment` (key, kind, target, amount)."""
        body = {"device_id": member.device.device_id, **payment}
        options = self.ok("POST", "/v1/me/quick-pay/challenges", member, json=body)
        assert member.device.touch(FINGER)
        assertion = member.device.get_assertion(json.dumps(options), ORIGIN)
        assert assertion is not None
        return json.loads(assertion)

    def sign_up(self, sequence: int) -> Member:
        phone, name = f"1380013{sequence:04d}", f"Tester {sequence}"
        registration = {"phone": phone, "real_name": name, "national_id": national_id(sequence)}
        user = self.ok("POST", "/v1/users", None, json=registration)
        headers = self.sign_in(phone)
        self.ok("POST", "/v1/me/kyc/channels", None, json={"channel": "bank_card"}, headers=headers)
        self.ok("PUT", "/v1/me/pin", None, json={"pin": PIN}, headers=headers)
        self.ok("POST", "/v1/me/wallet", None, headers=headers)
        account_number = f"62220200{sequence:08d}"
        self.bank.open_account(BANK, account_number, name, BANK_OPENING_FEN)
        link = {"bank_code": BANK, "account_number": account_number}
        linked = self.ok("POST", "/v1/me/bank-accounts", None, json=link, headers=headers)
        top_up = {"bank_account_id": linked["id"], "amount_fen": TOP_UP_FEN, "pin": PIN}
        key = {"Idempotency-Key": uuid.uuid4().hex}
        operation = self.ok("POST", "/v1/me/top-ups", None, json=top_up, headers=headers | key)
        device = self.bind(headers, f"phone-{sequence}")
        return Member(
            sequence,
            phone,
            user["id"],
            headers,
            linked["id"],
            account_number,
            device,
            operation["operation_id"],
        )
