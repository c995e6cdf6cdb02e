"""Schemathesis against the app's own OpenAPI document: no request answers a 5xx.

Every operation of /openapi.json gets `EXAMPLES_PER_OPERATION` generated requests,
derandomized so that a run is repeatable, sent in-process through the ASGI transport (no
network). Authenticated operations are called signed in: each operation gets a fresh,
fully set-up user (PIN, wallet, linked bank account, money, a bound phone), whose bearer
token replaces the generated `Authorization` header and a fresh `Idempotency-Key`
replaces the generated one, so that the requests reach the handlers rather than stop at
401 or 400. Half of the money-moving requests also carry the user's own PIN and linked
bank account id, so that some of them move money for real.

It runs on both engines: a server error can come from the database as well as from the
HTTP layer.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from milletpay.api import create_app
from milletpay.api.partners import partner_api_key
from milletpay.banks.keys import issuer_bins
from milletpay.core.clock import ManualClock
from milletpay.core.keyring import KeyRing
from milletpay.emv.keys import IssuerKeyStore
from milletpay.identity import PIN_HASHING_FAST, SimulatedSms
from milletpay.identity.quickpay import PARTNERS
from milletpay.wallet import SimulatedBankGateway

from .members import PIN, Member, Platform

#: Generated requests per operation and generation mode (valid input, then input that
#: breaks the schema): enough to reach the handlers' branches on bad input, few enough
#: that the run takes about half a minute.
EXAMPLES_PER_OPERATION = 50
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


MERCHANT_APPLICATION = {
    "legal_name": "Millet Test Shop",
    "display_name": "Test Shop",
    "city": "Beijing",
    "mcc": "5411",
    "settlement_bank_code": "ICBC",
    "settlement_account_number": "6222020011112222",
}


@pytest.fixture
def platform(database_url: str) -> Iterator[Platform]:
    app = create_app(
        database_url,
        clock=(clock := ManualClock()),  # stands still: the sessions never expire
        keyring=KeyRing.generate(),
        sms=(sms := SimulatedSms()),
        pin_hashing=PIN_HASHING_FAST,
        bank_gateway=(bank := SimulatedBankGateway()),
        issuer_keys=IssuerKeyStore.generate(issuer_bins()),
        # A merchant's endpoint the requests create is answered here, never on a network.
        webhook_transport=httpx.MockTransport(lambda _request: httpx.Response(200)),
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        yield Platform(client, clock, sms, bank)


@dataclass(frozen=True)
class Keys:
    """What signs the paths a user's session does not: a partner's and a merchant's key."""

    partner: str
    merchant: str


#: Paths a merchant's secret key signs.
MERCHANT_PATHS = ("/v1/merchant", "/v1/payment-intents")


def _signed_in(case: schemathesis.Case, member: Member, turn: int, keys: Keys) -> dict[str, str]:
    """The member's session (a partner's or merchant's key on their paths) and a fresh
    key; on even turns, their own PIN, account, phone and bound phone."""
    if turn % 2 == 0 and isinstance(case.body, dict):
        own = {
            "pin": PIN,
            "bank_account_id": member.bank_account_id,
            "phone": member.phone,
            "device_id": member.device.device_id,
        }
        for field, value in own.items():
            if field in case.body:
                case.body[field] = value
    if case.path.startswith("/v1/partners/"):
        return {"Authorization": f"Bearer {keys.partner}"}
    if case.path.startswith(MERCHANT_PATHS):
        return {"Authorization": f"Bearer {keys.merchant}", "Idempotency-Key": uuid.uuid4().hex}
    return {**member.headers, "Idempotency-Key": uuid.uuid4().hex}


def _exercise(
    operation: Any,
    mode: schemathesis.GenerationMode,
    member: Member,
    failures: dict[str, str],
    statuses: set[int],
    keys: Keys,
) -> None:
    turns = itertools.count()

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    # The failure recorded last under a label is the example hypothesis shrank it to.
    def run(case: schemathesis.Case) -> None:
        headers = _signed_in(case, member, next(turns), keys)
        label = f"{operation.label} ({mode})"
        try:
            response = case.call(headers=headers)
        except Exception as error:
            # The in-process transport re-raises what the app raised after its 500.
            failures[label] = f"server error {error!r}: {case.as_curl_command()}"
            raise
        statuses.add(response.status_code)
        try:
            case.validate_response(response, checks=CHECKS)
        except (AssertionError, BaseExceptionGroup) as failure:
            failures[label] = str(failure)
            raise

    failed_before = len(failures)
    try:
        run()
    except Unsatisfiable:
        # No request can break the schema of an operation that takes no input.
        assert mode is schemathesis.GenerationMode.NEGATIVE, operation.label
    except (Exception, BaseExceptionGroup):
        if len(failures) == failed_before:
            raise  # not a failure of the app: a fault of this test itself


def test_no_generated_request_gets_a_server_error(platform: Platform) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", platform.client.app)
    keyring = platform.client.app.state.keyring  # type: ignore[attr-defined]
    onboarded = platform.client.post("/v1/merchants", json=MERCHANT_APPLICATION)
    assert onboarded.status_code == 201, onboarded.text
    keys = Keys(partner_api_key(keyring, next(iter(PARTNERS))), onboarded.json()["secret_key"])
    failures: dict[str, str] = {}
    statuses: dict[str, set[int]] = {}
    sequences = itertools.count(1)
    for result in schema.get_all_operations():
        operation = result.ok()
        seen = statuses.setdefault(operation.label, set())
        for mode in schemathesis.GenerationMode:
            member = platform.sign_up(next(sequences))
            _exercise(operation, mode, member, failures, seen, keys)
    assert failures == {}, "\n\n".join(f"{label}: {text}" for label, text in failures.items())
    assert "GET /v1/me/wallet" in statuses  # the schema was read and its operations run
    # Signed in, every operation got past authentication to its handler.
    assert [label for label, seen in statuses.items() if seen <= {401}] == []
