"""Events and their delivery: the outbox follows the caller's transaction; the worker
signs, retries on the schedule within the window, logs every attempt, and never sends
one attempt twice, whatever the number of workers."""

from __future__ import annotations

import json
import threading
from collections import Counter

import pytest
import sqlalchemy as sa

from milletpay.checkout.webhooks import (
    DELIVERIES_PER_ENDPOINT_PER_RUN_MAX,
    DELIVERIES_PER_EVENT_MAX,
    DELIVERY_WINDOW_S,
    EVENT_ID_HEADER,
    EVENT_PAYLOAD_CHARS_MAX,
    LEASE_S,
    SIGNATURE_HEADER,
    DeliveryStats,
    DeliveryStatus,
    EventInvalid,
    EventNotFound,
    EventType,
    ReplayLimitReached,
    Webhooks,
    WebhookWorker,
    event_public_id,
    retry_delay_s,
    verify_signature,
)
from milletpay.core.clock import NS_PER_S, ManualClock
from milletpay.core.keyring import KeyRing
from milletpay.store import create_engine, write_transaction

from .conftest import (
    HANG,
    MERCHANT,
    OTHER_MERCHANT,
    TIMEOUT_S,
    Receiver,
    emit_committed,
    no_jitter,
    now_s,
)


def _advance_to(clock: ManualClock, at_ns: int) -> None:
    clock.advance(nanoseconds=max(0, at_ns - clock.now_ns()))


def _count(engine: sa.Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())


def test_an_event_of_a_rolled_back_transaction_is_never_delivered(
    webhooks: Webhooks, worker: WebhookWorker, receiver: Receiver, engine: sa.Engine
) -> None:
    webhooks.create_endpoint(MERCHANT, receiver.url(), ["*"])

    class PaymentFailed(Exception):
        pass

    with pytest.raises(PaymentFailed), write_transaction(engine) as conn:
        webhooks.emit(conn, MERCHANT, EventType.PAYMENT_INTENT_SUCCEEDED, {"id": "pi_1"})
        raise PaymentFailed
    assert worker.deliver_due() == DeliveryStats()
    assert receiver.received() == []
    assert _count(engine, "webhook_events") == 0
    assert _count(engine, "webhook_deliveries") == 0


def test_a_committed_event_is_delivered_signed(
    webhooks: Webhooks,
    worker: WebhookWorker,
    receiver: Receiver,
    engine: sa.Engine,
    clock: ManualClock,
) -> None:
    _, secret = webhooks.create_endpoint(MERCHANT, receiver.url(), ["*"])
    data = {"id": "pi_1", "amount_minor": 12_345, "currency": "CNY", "note": "小米"}
    event_id = emit_committed(webhooks, engine, data=data)

    assert worker.deliver_due() == DeliveryStats(claimed=1, succeeded=1)
    [request] = receiver.received()
    headers = {k.lower(): v for k, v in request.headers.items()}
    assert headers["content-type"] == "application/json"
    assert headers[EVENT_ID_HEADER.lower()] == event_public_id(event_id)
    signed_at = verify_signature(
        headers[SIGNATURE_HEADER.lower()], request.body, secret, now_s=now_s(clock)
    )
    assert signed_at == now_s(clock)
    assert json.loads(request.body) == {
        "id": event_public_id(event_id),
        "object": "event",
        "type": "payment_intent.succeeded",
        "created": now_s(clock),
        "data": {"object": data},
    }
    assert request.body == webhooks.event(MERCHANT, event_id).payload.encode()
    [delivery] = webhooks.deliveries(MERCHANT, event_id)
    assert delivery.status is DeliveryStatus.SUCCEEDED
    assert delivery.delivered_at_ns == clock.now_ns()
    assert [(a.number, a.status_code, a.error) for a in delivery.log] == [(1, 200, None)]
    assert worker.deliver_due() == DeliveryStats()  # nothing is sent twice


def test_a_500_is_retried_at_the_backoff_time_and_both_attempts_are_logged(
    webhooks: Webhooks,
    worker: WebhookWorker,
    receiver: Receiver,
    engine: sa.Engine,
    clock: ManualClock,
) -> None:
    _, secret = webhooks.create_endpoint(MERCHANT, receiver.url(), ["*"])
    receiver.answer("/hook", 500)
    event_id = emit_committed(webhooks, engine)
    started_ns = clock.now_ns()

    assert worker.deliver_due() == DeliveryStats(claimed=1, retrying=1)
    [delivery] = webhooks.deliveries(MERCHANT, event_id)
    assert delivery.status is DeliveryStatus.PENDING
    assert delivery.next_attempt_at_ns == started_ns + retry_delay_s(1) * NS_PER_S
    assert (delivery.last_status_code, delivery.last_error) == (500, "HTTP 500")

    clock.advance(seconds=retry_delay_s(1) - 1)
    assert worker.deliver_due() == DeliveryStats()  # not yet due
    clock.advance(seconds=1)
    assert worker.deliver_due() == DeliveryStats(claimed=1, succeeded=1)

    first, second = receiver.received()
    assert first.body == second.body  # the same event, id and all
    verify_signature(second.headers[SIGNATURE_HEADER], second.body, secret, now_s=now_s(clock))
    [delivery] = webhooks.deliveries(MERCHANT, event_id)
    assert delivery.status is DeliveryStatus.SUCCEEDED
    assert [(a.number, a.status_code, a.at_ns) for a in delivery.log] == [
        (1, 500, started_ns),
        (2, 200, started_ns + retry_delay_s(1) * NS_PER_S),
    ]
    assert delivery.log[0].error == "HTTP 500"
    assert all(a.duration_ms >= 0 for a in delivery.log)


def test_the_schedule_doubles_from_30_s_up_to_one_hour() -> None:
    assert [retry_delay_s(n) for n in range(1, 10)] == [
        30,
        60,
        120,
        240,
        480,
        960,
        1920,
        3600,
        3600,
    ]
    assert retry_delay_s(1_000) == 3600


def test_retries_end_in_failed_once_the_window_is_over(
    webhooks: Webhooks,
    worker: WebhookWorker,
    receiver: Receiver,
    engine: sa.Engine,
    clock: ManualClock,
) -> None:
    receiver.always("/hook", 503)
    webhooks.create_endpoint(MERCHANT, receiver.url(), ["*"])
    event_id = emit_committed(webhooks, engine)
    started_ns = clock.now_ns()
    for _ in range(200):  # a bound on the test itself
        [delivery] = webhooks.deliveries(MERCHANT, event_id)
        if delivery.status is not DeliveryStatus.PENDING:
            break
        _advance_to(clock, delivery.next_attempt_at_ns)
        worker.deliver_due()
    assert delivery.status is DeliveryStatus.FAILED
    # 7 doubling waits (3810 s), then hourly ones, until the next would pass 3 days.
    assert delivery.attempts == 78 == len(delivery.log) == len(receiver.received())
    assert delivery.log[-1].at_ns - started_ns <= DELIVERY_WINDOW_S * NS_PER_S
    assert delivery.log[-1].at_ns + 3600 * NS_PER_S - started_ns > DELIVERY_WINDOW_S * NS_PER_S
    assert delivery.last_status_code == 503
    clock.advance(seconds=DELIVERY_WINDOW_S)
    assert worker.deliver_due() == DeliveryStats()


def test_the_jitter_lengthens_a_wait_by_at_most_a_tenth(
    webhooks: Webhooks,
    receiver: Receiver,
    engine: sa.Engine,
    keyring: KeyRing,
    clock: ManualClock,
) -> None:
    bounds: list[int] = []

    def largest(bound: int) -> int:
        bounds.append(bound)
        return bound - 1

    receiver.answer("/hook", 500)
    webhooks.create_endpoint(MERCHANT, receiver.url(), ["*"])
    event_id = emit_committed(webhooks, engine)
    started_ns = clock.now_ns()
    with WebhookWorker(engine, keyring, clock, randbelow=largest, timeout_s=TIMEOUT_S) as worker:
        worker.deliver_due()
    [delivery] = webhooks.deliveries(MERCHANT, event_id)
    assert bounds == [3 * NS_PER_S + 1]
    assert delivery.next_attempt_at_ns == started_ns + 33 * NS_PER_S


def test_a_hanging_endpoint_times_out_without_holding_up_the_others(
    webhooks: Webhooks,
    worker: WebhookWorker,
    receiver: Receiver,
    engine: sa.Engine,
) -> None:
    receiver.always("/slow", HANG)
    webhooks.create_endpoint(MERCHANT, receiver.url("/slow"), ["*"])
    webhooks.create_endpoint(MERCHANT, receiver.url("/fast"), ["*"])
    webhooks.create_endpoint(MERCHANT, "http://127.0.0.1:9/closed", ["*"])
    event_id = emit_committed(webhooks, engine)

    assert worker.deliver_due() == DeliveryStats(claimed=3, succeeded=1, retrying=2)
    by_url = {endpoint.url: endpoint.id for endpoint in webhooks.endpoints(MERCHANT)}
    deliveries = {d.endpoint_id: d for d in webhooks.deliveries(MERCHANT, event_id)}
    fast = deliveries[by_url[receiver.url("/fast")]]
    slow = deliveries[by_url[receiver.url("/slow")]]
    closed = deliveries[by_url["http://127.0.0.1:9/closed"]]
    assert fast.status is DeliveryStatus.SUCCEEDED
    assert slow.status is DeliveryStatus.PENDING
    assert slow.last_status_code is None
    assert slow.last_error is not None and "Timeout" in slow.last_error
    assert closed.last_error is not None and "ConnectError" in closed.last_error


def test_a_disabled_endpoint_gets_nothing(
    webhooks: Webhooks,
    worker: WebhookWorker,
    receiver: Receiver,
    engine: sa.Engine,
) -> None:
    endpoint, _ = webhooks.create_endpoint(MERCHANT, receiver.url(), ["*"])
    pending = emit_committed(webhooks, engine)
    webhooks.disable_endpoint(MERCHANT, endpoint.id)
    later = emit_committed(webhooks, engine)

    assert worker.deliver_due() == DeliveryStats()
    assert receiver.received() == []
    [failed] = webhooks.deliveries(MERCHANT, pending)
    assert (failed.status, failed.last_error) == (DeliveryStatus.FAILED, "endpoint disabled")
    assert webhooks.deliveries(MERCHANT, later) == []

    webhooks.enable_endpoint(MERCHANT, endpoint.id)
    emit_committed(webhooks, engine)
    assert worker.deliver_due() == DeliveryStats(claimed=1, succeeded=1)


def test_endpoints_receive_only_the_types_they_subscribed_to(
    webhooks: Webhooks,
    worker: WebhookWorker,
    receiver: Receiver,
    engine: sa.Engine,
) -> None:
    webhooks.create_endpoint(MERCHANT, receiver.url("/refunds"), ["refund.succeeded"])
    webhooks.create_endpoint(MERCHANT, receiver.url("/all"), "*")
    webhooks.create_endpoint(OTHER_MERCHANT, receiver.url("/other"), "*")
    for event_type in (EventType.PAYMENT_INTENT_SUCCEEDED, EventType.REFUND_SUCCEEDED):
        emit_committed(webhooks, engine, event_type)

    assert worker.deliver_due().succeeded == 3

    def types(path: str) -> list[str]:
        return sorted(json.loads(r.body)["type"] for r in receiver.received(path))

    assert types("/refunds") == ["refund.succeeded"]
    assert types("/all") == ["payment_intent.succeeded", "refund.succeeded"]
    assert types("/other") == []


def test_replay_delivers_the_same_event_again(
    webhooks: Webhooks,
    worker: WebhookWorker,
    receiver: Receiver,
    engine: sa.Engine,
) -> None:
    webhooks.create_endpoint(MERCHANT, receiver.url(), ["*"])
    event_id = emit_committed(webhooks, engine)
    worker.deliver_due()
    [added] = webhooks.replay(MERCHANT, event_id)
    assert worker.deliver_due() == DeliveryStats(claimed=1, succeeded=1)

    first, again = receiver.received()
    assert first.body == again.body
    assert first.headers[EVENT_ID_HEADER] == again.headers[EVENT_ID_HEADER]
    deliveries = webhooks.deliveries(MERCHANT, event_id)
    assert [d.status for d in deliveries] == [DeliveryStatus.SUCCEEDED] * 2
    assert deliveries[1].id == added


def test_another_merchants_event_is_not_found(
    webhooks: Webhooks, receiver: Receiver, engine: sa.Engine
) -> None:
    webhooks.create_endpoint(MERCHANT, receiver.url(), ["*"])
    event_id = emit_committed(webhooks, engine, merchant_id=OTHER_MERCHANT)
    for call in (webhooks.replay, webhooks.deliveries, webhooks.event):
        with pytest.raises(EventNotFound) as raised:
            call(MERCHANT, event_id)
        assert raised.value.code == "webhook_event_not_found"
    assert webhooks.deliveries(OTHER_MERCHANT, event_id) == []


@pytest.mark.parametrize(
    ("event_type", "data"),
    [
        ("payment_intent.exploded", {"id": "pi_1"}),
        (EventType.PAYMENT_INTENT_SUCCEEDED, {"amount": float("nan")}),
        (EventType.PAYMENT_INTENT_SUCCEEDED, {"when": object()}),
        (EventType.PAYMENT_INTENT_SUCCEEDED, {"note": "x" * EVENT_PAYLOAD_CHARS_MAX}),
    ],
)
def test_an_invalid_event_is_refused_and_writes_nothing(
    webhooks: Webhooks, engine: sa.Engine, event_type: str, data: dict[str, object]
) -> None:
    with pytest.raises(EventInvalid) as raised, write_transaction(engine) as conn:
        webhooks.emit(conn, MERCHANT, event_type, data)
    assert raised.value.code == "webhook_event_invalid"
    assert _count(engine, "webhook_events") == 0


def test_two_workers_never_send_the_same_attempt_twice(
    webhooks: Webhooks,
    receiver: Receiver,
    engine: sa.Engine,
    keyring: KeyRing,
    clock: ManualClock,
    database_url: str,
) -> None:
    for n in range(4):
        webhooks.create_endpoint(MERCHANT, receiver.url(f"/{n}"), ["*"])
    events = [emit_committed(webhooks, engine, data={"n": n}) for n in range(12)]
    engines = [create_engine(database_url) for _ in range(2)]
    workers = [
        WebhookWorker(e, keyring, clock, randbelow=no_jitter, timeout_s=TIMEOUT_S) for e in engines
    ]
    start = threading.Barrier(len(workers))
    claimed: list[int] = []

    def run(worker: WebhookWorker) -> None:
        start.wait()
        for _ in range(20):
            stats = worker.deliver_due(limit=5)
            claimed.append(stats.claimed)
            if stats.claimed == 0:
                return

    threads = [threading.Thread(target=run, args=(w,)) for w in workers]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    finally:
        for worker in workers:
            worker.close()
        for e in engines:
            e.dispose()
    sent = Counter((r.path, r.headers[EVENT_ID_HEADER]) for r in receiver.received())
    assert len(sent) == 4 * len(events)
    assert set(sent.values()) == {1}
    assert sum(claimed) == 4 * len(events)
    assert _count(engine, "webhook_attempts") == 4 * len(events)


def test_run_forever_delivers_until_stopped(
    webhooks: Webhooks,
    worker: WebhookWorker,
    receiver: Receiver,
    engine: sa.Engine,
) -> None:
    webhooks.create_endpoint(MERCHANT, receiver.url(), ["*"])
    stop = threading.Event()
    thread = threading.Thread(target=worker.run_forever, args=(stop, 0.05))
    thread.start()
    try:
        event_id = emit_committed(webhooks, engine)
        for _ in range(200):
            if receiver.received():
                break
            stop.wait(0.05)
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()
    assert [d.status for d in webhooks.deliveries(MERCHANT, event_id)] == [DeliveryStatus.SUCCEEDED]


def _in_flight(worker: WebhookWorker, receiver: Receiver) -> threading.Thread:
    """`worker` runs in a thread; returns once its request reached the receiver."""
    thread = threading.Thread(target=worker.deliver_due)
    thread.start()
    for _ in range(400):
        if receiver.received():
            return thread
        threading.Event().wait(0.01)
    raise AssertionError("the worker sent nothing")


def test_a_delivery_in_flight_is_not_taken_by_another_worker(
    webhooks: Webhooks,
    receiver: Receiver,
    engine: sa.Engine,
    keyring: KeyRing,
    clock: ManualClock,
) -> None:
    receiver.answer("/hook", HANG)
    webhooks.create_endpoint(MERCHANT, receiver.url(), ["*"])
    event_id = emit_committed(webhooks, engine)
    first = WebhookWorker(engine, keyring, clock, randbelow=no_jitter, timeout_s=TIMEOUT_S)
    second = WebhookWorker(engine, keyring, clock, randbelow=no_jitter, timeout_s=TIMEOUT_S)
    try:
        thread = _in_flight(first, receiver)
        assert second.deliver_due() == DeliveryStats()
        thread.join(timeout=10)
    finally:
        first.close()
        second.close()
    assert len(receiver.received()) == 1
    [delivery] = webhooks.deliveries(MERCHANT, event_id)
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.PENDING, 1)


def test_a_lapsed_lease_lets_another_worker_send_again_and_the_first_keeps_out(
    webhooks: Webhooks,
    receiver: Receiver,
    engine: sa.Engine,
    keyring: KeyRing,
    clock: ManualClock,
) -> None:
    receiver.answer("/hook", HANG, 200)
    webhooks.create_endpoint(MERCHANT, receiver.url(), ["*"])
    event_id = emit_committed(webhooks, engine)
    first = WebhookWorker(engine, keyring, clock, randbelow=no_jitter, timeout_s=TIMEOUT_S)
    second = WebhookWorker(engine, keyring, clock, randbelow=no_jitter, timeout_s=TIMEOUT_S)
    try:
        thread = _in_flight(first, receiver)
        clock.advance(seconds=LEASE_S)  # the first worker is presumed dead
        assert second.deliver_due() == DeliveryStats(claimed=1, succeeded=1)
        thread.join(timeout=10)
    finally:
        first.close()
        second.close()
    # At least once: both requests went; the late answer does not undo the success.
    assert len(receiver.received()) == 2
    [delivery] = webhooks.deliveries(MERCHANT, event_id)
    assert delivery.status is DeliveryStatus.SUCCEEDED
    assert sorted((a.status_code or 0) for a in delivery.log) == [0, 200]


def test_an_endpoint_deleted_mid_attempt_does_not_spoil_the_run(
    webhooks: Webhooks,
    worker: WebhookWorker,
    receiver: Receiver,
    engine: sa.Engine,
) -> None:
    receiver.answer("/slow", HANG)
    slow, _ = webhooks.create_endpoint(MERCHANT, receiver.url("/slow"), ["*"])
    webhooks.create_endpoint(MERCHANT, receiver.url("/fast"), ["*"])
    event_id = emit_committed(webhooks, engine)
    thread = threading.Thread(target=worker.deliver_due)
    thread.start()
    for _ in range(400):
        if receiver.received("/slow"):
            break
        threading.Event().wait(0.01)
    webhooks.delete_endpoint(MERCHANT, slow.id)
    thread.join(timeout=10)
    [delivery] = webhooks.deliveries(MERCHANT, event_id)
    assert delivery.status is DeliveryStatus.SUCCEEDED
    assert _count(engine, "webhook_attempts") == 1


def test_replays_stop_at_the_maximum_of_deliveries_per_event(
    webhooks: Webhooks, receiver: Receiver, engine: sa.Engine
) -> None:
    webhooks.create_endpoint(MERCHANT, receiver.url(), ["*"])
    event_id = emit_committed(webhooks, engine)
    for _ in range(DELIVERIES_PER_EVENT_MAX - 1):
        webhooks.replay(MERCHANT, event_id)
    with pytest.raises(ReplayLimitReached) as raised:
        webhooks.replay(MERCHANT, event_id)
    assert raised.value.code == "webhook_replay_limit_reached"
    assert len(webhooks.deliveries(MERCHANT, event_id)) == DELIVERIES_PER_EVENT_MAX


def test_one_endpoints_backlog_takes_a_bounded_share_of_a_run(
    webhooks: Webhooks,
    worker: WebhookWorker,
    receiver: Receiver,
    engine: sa.Engine,
) -> None:
    webhooks.create_endpoint(MERCHANT, receiver.url("/busy"), ["refund.succeeded"])
    webhooks.create_endpoint(MERCHANT, receiver.url("/quiet"), ["payout.paid"])
    backlog = DELIVERIES_PER_ENDPOINT_PER_RUN_MAX + 4
    for _ in range(backlog):
        emit_committed(webhooks, engine, EventType.REFUND_SUCCEEDED)
    emit_committed(webhooks, engine, EventType.PAYOUT_PAID)  # the newest, yet not last

    assert worker.deliver_due().claimed == DELIVERIES_PER_ENDPOINT_PER_RUN_MAX + 1
    assert len(receiver.received("/quiet")) == 1
    assert len(receiver.received("/busy")) == DELIVERIES_PER_ENDPOINT_PER_RUN_MAX
    assert worker.deliver_due().claimed == 4
