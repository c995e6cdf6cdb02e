"""Webhook endpoints: registration, validation, the per-merchant maximum, ownership,
and a signing secret that is shown once and never stored in clear."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from milletpay.checkout.webhooks import (
    ENDPOINTS_PER_MERCHANT_MAX,
    URL_CHARS_MAX,
    EndpointBusy,
    EndpointLimitReached,
    EndpointNotFound,
    EndpointStatus,
    EventType,
    WebhookEventTypesInvalid,
    Webhooks,
    WebhookUrlInvalid,
    check_url,
)
from milletpay.core.clock import ManualClock
from milletpay.core.keyring import KeyRing
from milletpay.store import create_engine
from milletpay.store.engine import sqlite_path

from .conftest import MERCHANT, OTHER_MERCHANT, emit_committed

WEBHOOK_TABLES = ("webhook_endpoints", "webhook_events", "webhook_deliveries", "webhook_attempts")
HTTPS_URL = "https://shop.example.com/millet/webhooks"


def _count(engine: sa.Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())


def test_a_new_endpoint_is_enabled_listed_and_comes_with_its_secret_once(
    webhooks: Webhooks,
) -> None:
    endpoint, secret = webhooks.create_endpoint(
        MERCHANT, HTTPS_URL, [EventType.PAYMENT_INTENT_SUCCEEDED, "refund.succeeded"]
    )
    assert re.fullmatch(r"whsec_[A-Za-z0-9_-]{43}", secret)
    assert endpoint.status is EndpointStatus.ENABLED
    assert endpoint.merchant_id == MERCHANT
    assert endpoint.url == HTTPS_URL
    assert endpoint.event_types == {
        EventType.PAYMENT_INTENT_SUCCEEDED,
        EventType.REFUND_SUCCEEDED,
    }
    assert webhooks.endpoints(MERCHANT) == [endpoint]
    assert webhooks.endpoints(OTHER_MERCHANT) == []
    assert secret not in repr(endpoint)


def test_each_endpoint_has_its_own_secret(webhooks: Webhooks) -> None:
    _, first = webhooks.create_endpoint(MERCHANT, HTTPS_URL, ["*"])
    _, second = webhooks.create_endpoint(MERCHANT, HTTPS_URL, ["*"])
    assert first != second


def test_the_wildcard_subscribes_to_every_type(webhooks: Webhooks) -> None:
    endpoint, _ = webhooks.create_endpoint(MERCHANT, HTTPS_URL, "*")
    assert endpoint.event_types == frozenset()
    assert all(endpoint.subscribes_to(t) for t in EventType)


@pytest.mark.parametrize(
    "url",
    [
        "",
        "shop.example.com/hook",
        "ftp://shop.example.com/hook",
        "https://",
        "https:///hook",
        "https://user:pass@shop.example.com/hook",
        "https://shop.example.com/hook#part",
        "https://shop.example.com:99999/hook",
        "https://shop.example.com/a b",
        "https://shop.example.com/\u00e9",
        "https://shop.example.com/" + "a" * (URL_CHARS_MAX - len("https://shop.example.com/") + 1),
    ],
)
def test_an_invalid_url_is_refused_and_nothing_is_stored(
    webhooks: Webhooks, engine: sa.Engine, url: str
) -> None:
    with pytest.raises(WebhookUrlInvalid) as raised:
        webhooks.create_endpoint(MERCHANT, url, ["*"])
    assert raised.value.code == "webhook_url_invalid"
    assert _count(engine, "webhook_endpoints") == 0


def test_a_url_of_the_maximum_length_is_accepted() -> None:
    base = "https://shop.example.com/"
    url = base + "a" * (URL_CHARS_MAX - len(base))
    assert len(url) == URL_CHARS_MAX
    assert check_url(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "http://shop.example.com/hook",
        "https://localhost/hook",
        "https://127.0.0.1/hook",
        "https://10.1.2.3/hook",
        "https://192.168.0.1/hook",
        "https://169.254.169.254/latest",
        "https://[::1]/hook",
    ],
)
def test_production_takes_https_to_internet_hosts_only(url: str) -> None:
    with pytest.raises(WebhookUrlInvalid):
        check_url(url)
    assert check_url(url, allow_http=True) == url


@pytest.mark.parametrize("types", [[], ["payment_intent.unknown"], ["*", "refund.failed"], [""]])
def test_invalid_event_types_are_refused(
    webhooks: Webhooks, engine: sa.Engine, types: list[str]
) -> None:
    with pytest.raises(WebhookEventTypesInvalid) as raised:
        webhooks.create_endpoint(MERCHANT, HTTPS_URL, types)
    assert raised.value.code == "webhook_event_types_invalid"
    assert _count(engine, "webhook_endpoints") == 0


def test_a_merchant_has_at_most_the_maximum_of_endpoints(webhooks: Webhooks) -> None:
    made = [
        webhooks.create_endpoint(MERCHANT, f"{HTTPS_URL}/{n}", ["*"])[0]
        for n in range(ENDPOINTS_PER_MERCHANT_MAX)
    ]
    with pytest.raises(EndpointLimitReached) as raised:
        webhooks.create_endpoint(MERCHANT, HTTPS_URL, ["*"])
    assert raised.value.code == "webhook_endpoint_limit_reached"
    # Disabled endpoints count; another merchant is not affected; a deletion frees a slot.
    webhooks.disable_endpoint(MERCHANT, made[3].id)
    with pytest.raises(EndpointLimitReached):
        webhooks.create_endpoint(MERCHANT, HTTPS_URL, ["*"])
    webhooks.create_endpoint(OTHER_MERCHANT, HTTPS_URL, ["*"])
    webhooks.delete_endpoint(MERCHANT, made[3].id)
    webhooks.create_endpoint(MERCHANT, HTTPS_URL, ["*"])
    assert len(webhooks.endpoints(MERCHANT)) == ENDPOINTS_PER_MERCHANT_MAX


def test_disable_and_enable_change_the_status(webhooks: Webhooks) -> None:
    endpoint, _ = webhooks.create_endpoint(MERCHANT, HTTPS_URL, ["*"])
    assert webhooks.disable_endpoint(MERCHANT, endpoint.id).status is EndpointStatus.DISABLED
    assert webhooks.endpoints(MERCHANT)[0].status is EndpointStatus.DISABLED
    assert webhooks.enable_endpoint(MERCHANT, endpoint.id).status is EndpointStatus.ENABLED
    assert webhooks.endpoint(MERCHANT, endpoint.id).status is EndpointStatus.ENABLED


@pytest.mark.parametrize("action", ["disable_endpoint", "enable_endpoint", "delete_endpoint"])
def test_another_merchants_endpoint_is_not_found_like_an_unknown_one(
    webhooks: Webhooks, action: str
) -> None:
    theirs, _ = webhooks.create_endpoint(OTHER_MERCHANT, HTTPS_URL, ["*"])
    errors = []
    for endpoint_id in (theirs.id, theirs.id + 1, -1, 1 << 130):
        with pytest.raises(EndpointNotFound) as raised:
            getattr(webhooks, action)(MERCHANT, endpoint_id)
        errors.append(raised.value.code)
    assert errors == ["webhook_endpoint_not_found"] * 4
    assert webhooks.endpoints(OTHER_MERCHANT) == [theirs]


def test_deleting_an_endpoint_deletes_its_deliveries_and_their_log(
    webhooks: Webhooks, engine: sa.Engine
) -> None:
    endpoint, _ = webhooks.create_endpoint(MERCHANT, HTTPS_URL, ["*"])
    event_id = emit_committed(webhooks, engine)
    assert len(webhooks.deliveries(MERCHANT, event_id)) == 1
    webhooks.delete_endpoint(MERCHANT, endpoint.id)
    assert webhooks.endpoints(MERCHANT) == []
    assert webhooks.deliveries(MERCHANT, event_id) == []
    assert _count(engine, "webhook_deliveries") == 0


def test_the_secret_is_never_stored_in_clear(
    engine: sa.Engine, keyring: KeyRing, clock: ManualClock, database_url: str
) -> None:
    webhooks = Webhooks(engine, keyring, clock)
    secrets = [webhooks.create_endpoint(MERCHANT, HTTPS_URL, ["*"])[1] for _ in range(3)]
    emit_committed(webhooks, engine)
    needles = [s.encode() for s in secrets] + [s.removeprefix("whsec_").encode() for s in secrets]
    with engine.connect() as conn:
        for table in WEBHOOK_TABLES:
            for row in conn.execute(sa.text(f"SELECT * FROM {table}")):
                for value in row:
                    raw = value.encode() if isinstance(value, str) else value
                    if isinstance(raw, bytes | memoryview):
                        assert not any(n in bytes(raw) for n in needles), table
    database = sqlite_path(database_url)
    if database is not None:  # the file and its write-ahead log, byte by byte
        for path in (database, Path(f"{database}-wal")):
            if path.exists():
                data = path.read_bytes()
                assert not any(n in data for n in needles), path


def test_concurrent_creations_never_pass_the_maximum(
    engine: sa.Engine, keyring: KeyRing, clock: ManualClock, database_url: str
) -> None:
    engines = [create_engine(database_url) for _ in range(3)]
    services = [Webhooks(e, keyring, clock) for e in engines]
    start = threading.Barrier(len(services))
    outcomes: list[str] = []

    def create_many(webhooks: Webhooks) -> None:
        start.wait()
        for n in range(10):
            try:
                webhooks.create_endpoint(MERCHANT, f"{HTTPS_URL}/{n}", ["*"])
                outcomes.append("created")
            except (EndpointLimitReached, EndpointBusy) as exc:
                outcomes.append(exc.code)

    threads = [threading.Thread(target=create_many, args=(s,)) for s in services]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    finally:
        for e in engines:
            e.dispose()
    created = outcomes.count("created")
    assert len(outcomes) == 30
    assert len(Webhooks(engine, keyring, clock).endpoints(MERCHANT)) == created
    assert created <= ENDPOINTS_PER_MERCHANT_MAX
    # Every request was answered: made, refused at the limit, or told to try again
    # (`webhook_endpoint_busy`, after losing every race for a free slot); how many of
    # the last two depends on the timing, never the sum.
    refused = outcomes.count("webhook_endpoint_limit_reached")
    busy = outcomes.count("webhook_endpoint_busy")
    assert created + refused + busy == 30 and refused > 0
