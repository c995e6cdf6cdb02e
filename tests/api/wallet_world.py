"""A platform for the wallet, coin and card API tests: the app on a test database, a
simulated bank gateway, the issuing banks (generated keys), SMS and clock, and people
signed up through the API (`World.person`)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi.testclient import TestClient

from milletpay.api import create_app
from milletpay.banks import Banks, GeneratedBankKeys
from milletpay.banks.keys import issuer_bins
from milletpay.core.clock import ManualClock
from milletpay.core.keyring import KeyRing
from milletpay.emv.keys import IssuerKeyStore
from milletpay.identity import PIN_HASHING_FAST, SimulatedSms
from milletpay.ledger import Ledger
from milletpay.sim.phone import SimulatedPhone
from milletpay.wallet import SimulatedBankGateway

from .members import national_id

BANK = "ICBC"
PIN = "135790"
ORIGIN = "https://pay.millet.example"


@dataclass
class Person:
    phone: str
    headers: dict[str, str]
    bank_account_id: str
    account_number: str


@dataclass
class World:
    client: TestClient
    clock: ManualClock
    sms: SimulatedSms
    bank: SimulatedBankGateway
    ledger: Ledger
    banks: Banks
    #: The webhook requests merchants' servers received (answered 200).
    webhooks_received: list[httpx.Request]
    people: int = 0

    def person(self, channels: tuple[str, ...] = ("bank_card",)) -> Person:
        """Registered, signed in, KYC channels verified, wallet open, bank linked, PIN set."""
        self.people += 1
        n = self.people
        phone, name = f"1380013{n:04d}", f"Tester {n}"
        answer = self.client.post(
            "/v1/users", json={"phone": phone, "real_name": name, "national_id": national_id(n)}
        )
        assert answer.status_code == 201, answer.text
        assert self.client.post("/v1/sessions/codes", json={"phone": phone}).status_code == 202
        code = self.sms.messages_to("+86" + phone)[-1].text.split("code is ")[1][:6]
        answer = self.client.post("/v1/sessions", json={"phone": phone, "code": code})
        assert answer.status_code == 201, answer.text
        headers = {"Authorization": f"Bearer {answer.json()['token']}"}
        for channel in channels:
            answer = self.client.post(
                "/v1/me/kyc/channels", json={"channel": channel}, headers=headers
            )
            assert answer.status_code == 201, answer.text
        assert self.client.put("/v1/me/pin", json={"pin": PIN}, headers=headers).status_code == 204
        for _ in range(2):  # opening twice answers the same
            answer = self.client.post("/v1/me/wallet", headers=headers)
            assert answer.status_code == 201, answer.text
            assert answer.json()["posted_fen"] == 0
        account_number = f"62220200{n:08d}"
        self.bank.open_account(BANK, account_number, name, 10_000_000)
        answer = self.client.post(
            "/v1/me/bank-accounts",
            json={"bank_code": BANK, "account_number": account_number},
            headers=headers,
        )
        assert answer.status_code == 201, answer.text
        assert answer.json()["account_masked"].endswith(account_number[-4:])
        return Person(phone, headers, answer.json()["id"], account_number)

    def post(self, path: str, person: Person, body: dict[str, Any], key: str | None = None) -> Any:
        headers = dict(person.headers)
        if key is not None:
            headers["Idempotency-Key"] = key
        return self.client.post(path, json=body, headers=headers)

    def top_up(self, person: Person, amount_fen: int, key: str | None = None) -> Any:
        body = {"bank_account_id": person.bank_account_id, "amount_fen": amount_fen, "pin": PIN}
        return self.post("/v1/me/top-ups", person, body, key or uuid.uuid4().hex)

    def p2p(
        self, sender: Person, phone: str, amount_fen: int, key: str | None = None, pin: str = PIN
    ) -> Any:
        body = {"recipient_phone": phone, "amount_fen": amount_fen, "pin": pin}
        return self.post("/v1/me/p2p-transfers", sender, body, key or uuid.uuid4().hex)

    def balance(self, person: Person) -> int:
        answer = self.client.get("/v1/me/wallet", headers=person.headers)
        assert answer.status_code == 200, answer.text
        return int(answer.json()["posted_fen"])


def make_world(
    database_url: str,
    *,
    clock: ManualClock | None = None,
    keyring: KeyRing | None = None,
    banks: Banks | None = None,
    issuer_keys: IssuerKeyStore | None = None,
    card_network: Any = None,
) -> Iterator[World]:
    """The world, torn down with the ledger verified and the coin liability checked;
    the keywords share a clock, key ring, banks and issuer keys with a card network."""
    bank = SimulatedBankGateway()
    clock = clock or ManualClock()
    keyring = keyring or KeyRing.generate()
    received: list[httpx.Request] = []
    banks = banks or Banks(database_url, keyring, GeneratedBankKeys(), clock)
    app = create_app(
        database_url,
        clock=clock,
        keyring=keyring,
        sms=(sms := SimulatedSms()),
        pin_hashing=PIN_HASHING_FAST,
        bank_gateway=bank,
        banks=banks,
        issuer_keys=issuer_keys or IssuerKeyStore.generate(issuer_bins()),
        webhooks_allow_http=True,
        webhook_transport=httpx.MockTransport(lambda r: _receive(received, r)),
        card_network=card_network,
    )
    with TestClient(app) as client:
        world = World(client, clock, sms, bank, app.state.ledger, banks, received)
        yield world
        assert world.ledger.verify().ok
        assert app.state.coins.coin_liability_check().balanced


def _receive(received: list[httpx.Request], request: httpx.Request) -> httpx.Response:
    """A merchant's webhook receiver: it keeps what it got and answers 200."""
    request.read()
    received.append(request)
    return httpx.Response(200)


def bound_phone(world: World, person: Person, device_id: str) -> SimulatedPhone:
    phone = SimulatedPhone(device_id, "Millet 14", world.clock)
    phone.enroll_fingerprint("right thumb")
    options = world.client.post(
        "/v1/me/devices/bindings",
        json={"device_id": device_id, "model": "Millet 14"},
        headers=person.headers,
    )
    assert options.status_code == 201, options.text
    assert phone.touch("right thumb")
    credential = phone.create_credential(json.dumps(options.json()), ORIGIN)
    assert credential is not None
    bound = world.client.post(
        "/v1/me/devices", json={"credential": json.loads(credential)}, headers=person.headers
    )
    assert bound.status_code == 201, bound.text
    return phone


def phone_approval(
    world: World, person: Person, phone: SimulatedPhone, payment: dict[str, Any]
) -> Any:
    body = {"device_id": phone.device_id, **payment}
    options = world.client.post("/v1/me/quick-pay/challenges", json=body, headers=person.headers)
    assert options.status_code == 201, options.text
    assert phone.touch("right thumb")
    assertion = phone.get_assertion(json.dumps(options.json()), ORIGIN)
    assert assertion is not None
    return json.loads(assertion)
