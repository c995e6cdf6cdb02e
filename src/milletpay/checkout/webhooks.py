"""Signed webhooks for merchants: endpoints, the event outbox, delivery with retries.

A merchant registers endpoints (`Webhooks.create_endpoint`); the code that changes a
payment calls `Webhooks.emit` inside its own transaction, which writes the event and one
pending delivery per subscribed endpoint (an outbox: no event for a change rolled back,
none lost for a change committed). A `WebhookWorker` takes due deliveries under a lease,
POSTs the event signed with the endpoint's secret, and retries failures on an
exponential schedule within a bounded window; every attempt is logged. Delivery is at
least once: the event id lets the merchant drop duplicates.

This module never stores, logs or returns a signing secret in clear, except once, to
the merchant, from `create_endpoint`; it never sends an event to an endpoint that did
not subscribe to its type, or to another merchant's endpoint.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import logging
import math
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
import sqlalchemy as sa

from milletpay.checkout.webhook_tables import (
    webhook_attempts,
    webhook_deliveries,
    webhook_endpoints,
    webhook_events,
)
from milletpay.core.clock import NS_PER_S, Clock
from milletpay.core.errors import MilletError
from milletpay.core.ids import IdGenerator, id_from_bytes, id_to_bytes
from milletpay.core.keyring import KeyRing, SealedDataError
from milletpay.store.engine import read_transaction, write_transaction
from milletpay.store.sql import Sql

# -- limits ---------------------------------------------------------------------------

#: Endpoints one merchant may have (enabled or disabled); the database holds it too.
ENDPOINTS_PER_MERCHANT_MAX: Final = 16
URL_CHARS_MAX: Final = 2048
#: The JSON body of one event, in characters (the `payload` column's bound).
EVENT_PAYLOAD_CHARS_MAX: Final = 65_536
EVENT_TYPE_CHARS_MAX: Final = 64
#: The error kept for an attempt and for a delivery's last attempt.
ERROR_CHARS_MAX: Final = 200
#: Deliveries one event may have, replays included.
DELIVERIES_PER_EVENT_MAX: Final = 256
#: Tries to take a free endpoint slot when concurrent creations keep taking it first.
SLOT_ATTEMPTS_MAX: Final = 4

# -- delivery -------------------------------------------------------------------------

#: One HTTP attempt's timeout (connect, send, and wait for each read of the answer).
DELIVERY_TIMEOUT_S: Final = 10
#: The first retry waits this long; each next one twice as long, up to the cap.
RETRY_BASE_S: Final = 30
RETRY_CAP_S: Final = 3_600
#: Each wait is lengthened by a random 0..10% so that retries do not arrive in step.
RETRY_JITTER_PERCENT: Final = 10
#: A delivery is retried for at most this long after it was created (3 days), then
#: failed. With the schedule above the window ends after 78 attempts (fewer with
#: jitter); `DELIVERY_ATTEMPTS_MAX` is a backstop should the schedule change.
DELIVERY_WINDOW_S: Final = 3 * 86_400
DELIVERY_ATTEMPTS_MAX: Final = 80
#: Deliveries one `deliver_due` run takes, and how many it sends at once.
DELIVERIES_PER_RUN_MAX: Final = 64
SENDERS_MAX: Final = 8
#: Deliveries of one endpoint in one run: a slow endpoint's backlog cannot fill a run.
DELIVERIES_PER_ENDPOINT_PER_RUN_MAX: Final = 8
#: How long a taken delivery is the taker's: longer than a whole run can last.
LEASE_S: Final = 300
#: `run_forever`'s pause after a run that found less than a full batch.
POLL_EVERY_S: Final = 1.0

# -- signatures -----------------------------------------------------------------------

SIGNATURE_HEADER: Final = "Millet-Signature"
EVENT_ID_HEADER: Final = "Millet-Event-Id"
SIGNATURE_SCHEME: Final = "v1"
SIGNATURE_TOLERANCE_S: Final = 300
SIGNATURE_HEADER_CHARS_MAX: Final = 1024
#: `v1` signatures one header may carry (more than one while a secret is rolled).
SIGNATURES_PER_HEADER_MAX: Final = 8
SECRET_PREFIX: Final = "whsec_"
SECRET_BYTES: Final = 32
EVENT_ID_PREFIX: Final = "evt_"
USER_AGENT: Final = "MilletPay-Webhooks/1"
_SECRET_AAD: Final = b"milletpay/checkout/webhook-secret/v1/"
_ALL_TYPES: Final = "*"
_TYPE_SEPARATOR: Final = ","

log = logging.getLogger(__name__)

RandBelow = Callable[[int], int]


# -- errors ---------------------------------------------------------------------------


class WebhookError(MilletError):
    code = "webhook_error"


class WebhookUrlInvalid(WebhookError):
    code = "webhook_url_invalid"


class WebhookEventTypesInvalid(WebhookError):
    code = "webhook_event_types_invalid"


class EndpointNotFound(WebhookError):
    """No such endpoint, or another merchant's: the two are not told apart."""

    code = "webhook_endpoint_not_found"


class EndpointLimitReached(WebhookError):
    code = "webhook_endpoint_limit_reached"


class EndpointBusy(WebhookError):
    """Concurrent creations kept taking the free slot first; try again."""

    code = "webhook_endpoint_busy"


class EventNotFound(WebhookError):
    """No such event, or another merchant's: the two are not told apart."""

    code = "webhook_event_not_found"


class EventInvalid(WebhookError):
    """The event's data is not JSON, or its body is over `EVENT_PAYLOAD_CHARS_MAX`."""

    code = "webhook_event_invalid"


class ReplayLimitReached(WebhookError):
    code = "webhook_replay_limit_reached"


class SignatureError(MilletError):
    """The receiver's side: a request that did not come, as sent, from Millet Pay."""

    code = "signature_error"


class SignatureHeaderMalformed(SignatureError):
    code = "signature_header_malformed"


class SignatureInvalid(SignatureError):
    code = "signature_invalid"


class SignatureTimestampOutsideTolerance(SignatureError):
    code = "signature_timestamp_outside_tolerance"


# -- data -----------------------------------------------------------------------------


class EventType(StrEnum):
    PAYMENT_INTENT_CREATED = "payment_intent.created"
    PAYMENT_INTENT_PROCESSING = "payment_intent.processing"  # a card payment sent
    PAYMENT_INTENT_REQUIRES_CAPTURE = "payment_intent.requires_capture"
    PAYMENT_INTENT_SUCCEEDED = "payment_intent.succeeded"
    PAYMENT_INTENT_PAYMENT_FAILED = "payment_intent.payment_failed"
    PAYMENT_INTENT_CANCELED = "payment_intent.canceled"
    REFUND_SUCCEEDED = "refund.succeeded"
    REFUND_FAILED = "refund.failed"
    PAYOUT_PAID = "payout.paid"
    PAYOUT_FAILED = "payout.failed"
    MERCHANT_UPDATED = "merchant.updated"


class EndpointStatus(StrEnum):
    ENABLED = "enabled"
    DISABLED = "disabled"


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A merchant's endpoint. `event_types` is empty when it takes every type. The
    signing secret is not here: it is shown once, by `create_endpoint`."""

    id: int
    merchant_id: int
    url: str
    event_types: frozenset[EventType]
    status: EndpointStatus
    created_at_ns: int

    def subscribes_to(self, event_type: EventType) -> bool:
        return not self.event_types or event_type in self.event_types


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    merchant_id: int
    type: EventType
    payload: str  # the JSON body, exactly as signed and sent
    created_at_ns: int

    @property
    def public_id(self) -> str:
        return event_public_id(self.id)


@dataclass(frozen=True, slots=True)
class Attempt:
    """One HTTP attempt: the status code answered (None if none came) or the error."""

    number: int
    at_ns: int
    status_code: int | None
    duration_ms: int
    error: str | None


@dataclass(frozen=True, slots=True)
class Delivery:
    id: int
    event_id: int
    endpoint_id: int
    status: DeliveryStatus
    attempts: int
    next_attempt_at_ns: int
    last_attempt_at_ns: int | None
    last_status_code: int | None
    last_error: str | None
    delivered_at_ns: int | None
    created_at_ns: int
    log: tuple[Attempt, ...]


@dataclass(frozen=True, slots=True)
class DeliveryStats:
    """What one `deliver_due` run did: deliveries taken, and how each ended."""

    claimed: int = 0
    succeeded: int = 0
    retrying: int = 0
    failed: int = 0


def event_public_id(event_id: int) -> str:
    """`evt_` and the 32 hex digits of the id: what merchants see and deduplicate on."""
    return f"{EVENT_ID_PREFIX}{event_id:032x}"


# -- signatures -----------------------------------------------------------------------


def signature_header(secret: str, timestamp_s: int, body: bytes) -> str:
    """`t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`."""
    return f"t={timestamp_s},{SIGNATURE_SCHEME}={_signature(secret, timestamp_s, body)}"


def verify_signature(
    header: str,
    body: bytes,
    secret: str,
    *,
    now_s: int,
    tolerance_s: int = SIGNATURE_TOLERANCE_S,
) -> int:
    """The receiver's check of a request: its `Millet-Signature` header, the raw body as
    received, and the endpoint's secret. The signed timestamp if one `v1` signature
    matches and the timestamp is within `tolerance_s` of `now_s`; otherwise
    `SignatureHeaderMalformed`, `SignatureInvalid` or
    `SignatureTimestampOutsideTolerance`."""
    assert tolerance_s >= 0
    timestamp_s, signatures = _parse_signature_header(header)
    expected = _signature(secret, timestamp_s, body)
    # Every signature is compared, in constant time, whatever the first one was.
    matches = [hmac.compare_digest(expected, candidate) for candidate in signatures]
    if not any(matches):
        raise SignatureInvalid("no v1 signature matches the body under this secret")
    if abs(now_s - timestamp_s) > tolerance_s:
        raise SignatureTimestampOutsideTolerance(
            f"signed at {timestamp_s}, {abs(now_s - timestamp_s)} s from now ({now_s}); "
            f"the tolerance is {tolerance_s} s"
        )
    return timestamp_s


def _signature(secret: str, timestamp_s: int, body: bytes) -> str:
    signed = f"{timestamp_s}.".encode("ascii") + body
    return hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()


def _parse_signature_header(header: str) -> tuple[int, list[str]]:
    if not isinstance(header, str) or not 1 <= len(header) <= SIGNATURE_HEADER_CHARS_MAX:
        raise SignatureHeaderMalformed(
            f"the header is 1 to {SIGNATURE_HEADER_CHARS_MAX} characters"
        )
    timestamps: list[str] = []
    signatures: list[str] = []
    for item in header.split(","):
        key, equals, value = item.strip().partition("=")
        if not equals:
            raise SignatureHeaderMalformed(f"item {item.strip()!r} is not key=value")
        if key == "t":
            timestamps.append(value)
        elif key == SIGNATURE_SCHEME:
            signatures.append(value)
        # Other schemes are ignored: a receiver keeps working when one is added.
    if len(timestamps) != 1 or not (timestamps[0].isascii() and timestamps[0].isdigit()):
        raise SignatureHeaderMalformed("the header needs exactly one t=<unix seconds>")
    if len(timestamps[0]) > 12:
        raise SignatureHeaderMalformed("t is more than 12 digits")
    if not 1 <= len(signatures) <= SIGNATURES_PER_HEADER_MAX:
        raise SignatureHeaderMalformed(
            f"the header needs 1 to {SIGNATURES_PER_HEADER_MAX} {SIGNATURE_SCHEME}= signatures"
        )
    for signature in signatures:
        if len(signature) != 64 or not all(c in "0123456789abcdef" for c in signature):
            raise SignatureHeaderMalformed("a v1 signature is 64 lower-case hex digits")
    return int(timestamps[0]), signatures


def _new_secret() -> str:
    raw = base64.urlsafe_b64encode(secrets.token_bytes(SECRET_BYTES)).rstrip(b"=")
    return SECRET_PREFIX + raw.decode("ascii")


def _secret_aad(endpoint_id: bytes) -> bytes:
    return _SECRET_AAD + endpoint_id


# -- validation -----------------------------------------------------------------------


def check_url(url: str, *, allow_http: bool = False) -> str:
    """The URL, if an endpoint may have it: https (http too when `allow_http`, the
    sandbox's setting), a host, no credentials or fragment, at most `URL_CHARS_MAX`
    printable ASCII characters. Outside the sandbox, `localhost` and loopback, private
    and link-local address literals are refused too. `WebhookUrlInvalid` names why."""
    if not isinstance(url, str) or not 1 <= len(url) <= URL_CHARS_MAX:
        raise WebhookUrlInvalid(f"a webhook URL is 1 to {URL_CHARS_MAX} characters")
    if not (url.isascii() and url.isprintable()) or " " in url:
        raise WebhookUrlInvalid("a webhook URL is printable ASCII without spaces")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port  # raises ValueError for a port that is not a number in range
    except ValueError as exc:
        raise WebhookUrlInvalid(f"the URL does not parse: {exc}") from None
    schemes = ("http", "https") if allow_http else ("https",)
    if parts.scheme not in schemes:
        raise WebhookUrlInvalid(f"the URL's scheme must be {' or '.join(schemes)}")
    if not host:
        raise WebhookUrlInvalid("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise WebhookUrlInvalid("the URL must not carry credentials")
    if parts.fragment:
        raise WebhookUrlInvalid("the URL must not have a fragment")
    if not allow_http and _is_internal_host(host):
        raise WebhookUrlInvalid(f"the host {host} is not reachable from the internet")
    return url


def _is_internal_host(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False  # a name; where it resolves to is the network's egress policy
    return (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_unspecified
        or address.is_reserved
        or address.is_multicast
    )


def _event_types_text(event_types: Iterable[EventType | str]) -> str:
    """The `event_types` column: `*`, or the known types sorted and comma-separated."""
    if isinstance(event_types, str):
        event_types = [event_types]
    chosen = list(event_types)
    if chosen == [_ALL_TYPES]:
        return _ALL_TYPES
    if not chosen:
        raise WebhookEventTypesInvalid("subscribe to at least one event type, or to '*'")
    known = {t.value for t in EventType}
    for chosen_type in chosen:
        if chosen_type not in known:
            raise WebhookEventTypesInvalid(
                f"{chosen_type!r} is not an event type (and '*' stands alone)"
            )
    return _TYPE_SEPARATOR.join(sorted({str(t) for t in chosen}))


def _subscribes(event_types_text: str, event_type: EventType) -> bool:
    return event_types_text == _ALL_TYPES or event_type in event_types_text.split(_TYPE_SEPARATOR)


def _event_type(event_type: EventType | str) -> EventType:
    try:
        return EventType(event_type)
    except ValueError:
        raise EventInvalid(f"{event_type!r} is not an event type") from None


#: How an event is written: compact, UTF-8 as it is, no NaN. Made once: `json.dumps` with
#: options makes an encoder on every call.
_EVENT_JSON: Final = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False)


def _event_payload(event_id: int, event_type: EventType, created_s: int, data: Any) -> str:
    event = {
        "id": event_public_id(event_id),
        "object": "event",
        "type": event_type.value,
        "created": created_s,
        "data": {"object": data},
    }
    try:
        payload = _EVENT_JSON.encode(event)
    except (TypeError, ValueError) as exc:
        raise EventInvalid(f"the event's data is not JSON: {exc}") from None
    if len(payload) > EVENT_PAYLOAD_CHARS_MAX:
        raise EventInvalid(
            f"the event is {len(payload)} characters; at most {EVENT_PAYLOAD_CHARS_MAX}"
        )
    return payload


# -- the retry schedule ---------------------------------------------------------------


def retry_delay_s(attempts: int) -> int:
    """The wait before the next attempt after `attempts` failed ones, before jitter:
    30 s, 60 s, 120 s, ... doubling up to 1 h."""
    assert attempts >= 1
    if attempts > 8:  # 30 s × 2^7 is already past the cap; no huge powers
        return RETRY_CAP_S
    return min(RETRY_BASE_S << (attempts - 1), RETRY_CAP_S)


def _next_attempt_at_ns(
    attempts: int, failed_at_ns: int, created_at_ns: int, randbelow: RandBelow
) -> int | None:
    """When to try again after `attempts` failed attempts, the last at `failed_at_ns`;
    None when the delivery is out of attempts or the next try would fall after its
    window."""
    if attempts >= DELIVERY_ATTEMPTS_MAX:
        return None
    delay_ns = retry_delay_s(attempts) * NS_PER_S
    jitter_ns = randbelow(delay_ns * RETRY_JITTER_PERCENT // 100 + 1)
    at_ns = failed_at_ns + delay_ns + jitter_ns
    if at_ns > created_at_ns + DELIVERY_WINDOW_S * NS_PER_S:
        return None
    return at_ns


# -- the service ----------------------------------------------------------------------

_INSERT_EVENT = Sql(
    """INSERT INTO webhook_events (id, merchant_id, type, payload, created_at)
    VALUES (:id, :merchant_id, :type, :payload, :created_at)"""
)
_SUBSCRIBERS = Sql(
    """SELECT id, event_types FROM webhook_endpoints
    WHERE merchant_id = :merchant_id AND status = :status"""
)
_INSERT_DELIVERY = Sql(
    """INSERT INTO webhook_deliveries (id, event_id, endpoint_id, status, attempts,
    next_attempt_at, created_at)
    VALUES (:id, :event_id, :endpoint_id, :status, 0, :next_attempt_at, :created_at)"""
)


class Webhooks:
    """Endpoints, events and their delivery log; thread-safe.

    `allow_http` is the sandbox's setting: it accepts http URLs and local hosts. A
    production deployment leaves it False: https only, to hosts on the internet."""

    def __init__(
        self, engine: sa.Engine, keyring: KeyRing, clock: Clock, *, allow_http: bool = False
    ) -> None:
        self._engine = engine
        self._keyring = keyring
        self._clock = clock
        self._ids = IdGenerator(clock)
        self._allow_http = allow_http

    # -- endpoints -------------------------------------------------------------------

    def create_endpoint(
        self, merchant_id: int, url: str, event_types: Iterable[EventType | str]
    ) -> tuple[Endpoint, str]:
        """A new enabled endpoint and its signing secret (`whsec_...`), which is shown
        this once. `WebhookUrlInvalid`, `WebhookEventTypesInvalid`,
        `EndpointLimitReached`; nothing is stored then."""
        check_url(url, allow_http=self._allow_http)
        types_text = _event_types_text(event_types)
        secret = _new_secret()
        merchant = id_to_bytes(merchant_id)
        for _ in range(SLOT_ATTEMPTS_MAX):
            endpoint_id = id_to_bytes(self._ids.next_id())
            row = {
                "id": endpoint_id,
                "merchant_id": merchant,
                "url": url,
                "event_types": types_text,
                "secret_sealed": self._keyring.seal(
                    secret.encode("ascii"), _secret_aad(endpoint_id)
                ),
                "status": EndpointStatus.ENABLED.value,
                "created_at": self._clock.now_ns(),
            }
            try:
                with write_transaction(self._engine) as conn:
                    row["slot"] = _free_slot(conn, merchant)
                    conn.execute(sa.insert(webhook_endpoints).values(row))
            except sa.exc.IntegrityError:  # a concurrent creation took the same slot
                continue
            endpoint = _endpoint(row)
            log.info("webhook endpoint %032x for merchant %032x", endpoint.id, merchant_id)
            return endpoint, secret
        raise EndpointBusy("endpoints were being created concurrently; try again")

    def endpoints(self, merchant_id: int) -> list[Endpoint]:
        """The merchant's endpoints, oldest first."""
        with read_transaction(self._engine) as conn:
            rows = conn.execute(
                sa.select(webhook_endpoints)
                .where(webhook_endpoints.c.merchant_id == id_to_bytes(merchant_id))
                .order_by(webhook_endpoints.c.id)
                .limit(ENDPOINTS_PER_MERCHANT_MAX)
            ).all()
        return [_endpoint(row._asdict()) for row in rows]

    def endpoint(self, merchant_id: int, endpoint_id: int) -> Endpoint:
        with read_transaction(self._engine) as conn:
            return _endpoint(_owned_endpoint(conn, merchant_id, endpoint_id)._asdict())

    def disable_endpoint(self, merchant_id: int, endpoint_id: int) -> Endpoint:
        """The endpoint gets nothing more: its pending deliveries fail now (a replay
        sends them again once it is enabled). `EndpointNotFound`."""
        with write_transaction(self._engine) as conn:
            row = _owned_endpoint(conn, merchant_id, endpoint_id)
            _set_status(conn, row.id, EndpointStatus.DISABLED)
            conn.execute(
                sa.update(webhook_deliveries)
                .where(
                    webhook_deliveries.c.endpoint_id == row.id,
                    webhook_deliveries.c.status == DeliveryStatus.PENDING.value,
                )
                .values(status=DeliveryStatus.FAILED.value, last_error="endpoint disabled")
            )
        return _endpoint({**row._asdict(), "status": EndpointStatus.DISABLED.value})

    def enable_endpoint(self, merchant_id: int, endpoint_id: int) -> Endpoint:
        """The endpoint gets the events emitted from now on. `EndpointNotFound`."""
        with write_transaction(self._engine) as conn:
            row = _owned_endpoint(conn, merchant_id, endpoint_id)
            _set_status(conn, row.id, EndpointStatus.ENABLED)
        return _endpoint({**row._asdict(), "status": EndpointStatus.ENABLED.value})

    def delete_endpoint(self, merchant_id: int, endpoint_id: int) -> None:
        """The endpoint, its sealed secret, its deliveries and their log are deleted.
        `EndpointNotFound`."""
        with write_transaction(self._engine) as conn:
            row = _owned_endpoint(conn, merchant_id, endpoint_id)
            conn.execute(sa.delete(webhook_endpoints).where(webhook_endpoints.c.id == row.id))
        log.info("webhook endpoint %032x deleted", endpoint_id)

    # -- events ----------------------------------------------------------------------

    def emit(
        self,
        conn: sa.Connection,
        merchant_id: int,
        event_type: EventType | str,
        data: Mapping[str, Any],
    ) -> int:
        """Write an event and one pending delivery per enabled endpoint of the merchant
        subscribed to its type, in the caller's transaction `conn`: they exist if and
        only if the caller's change commits. The event's id. `EventInvalid`."""
        kind = _event_type(event_type)
        now_ns = self._clock.now_ns()
        event_id = self._ids.next_id()
        payload = _event_payload(event_id, kind, now_ns // NS_PER_S, dict(data))
        merchant = id_to_bytes(merchant_id)
        key = id_to_bytes(event_id)
        _INSERT_EVENT.run(
            conn, id=key, merchant_id=merchant, type=kind.value, payload=payload, created_at=now_ns
        )
        for endpoint in _SUBSCRIBERS.run(
            conn, merchant_id=merchant, status=EndpointStatus.ENABLED.value
        ):
            if _subscribes(endpoint.event_types, kind):
                self._add_delivery(conn, key, endpoint.id, now_ns)
        return event_id

    def event(self, merchant_id: int, event_id: int) -> Event:
        """`EventNotFound` for an unknown event or another merchant's."""
        with read_transaction(self._engine) as conn:
            return _event(_owned_event(conn, merchant_id, event_id))

    def replay(self, merchant_id: int, event_id: int) -> list[int]:
        """Send the event again, as it was (same id, same body): a new pending delivery
        to each of the merchant's enabled endpoints subscribed to its type; their ids.
        `EventNotFound`; `ReplayLimitReached` past `DELIVERIES_PER_EVENT_MAX`."""
        now_ns = self._clock.now_ns()
        with write_transaction(self._engine) as conn:
            # Locked: two replays at once must not both pass the count below.
            event = _event(_owned_event(conn, merchant_id, event_id, lock=True))
            targets = [
                row.id
                for row in _SUBSCRIBERS.run(
                    conn, merchant_id=id_to_bytes(merchant_id), status=EndpointStatus.ENABLED.value
                )
                if _subscribes(row.event_types, event.type)
            ]
            existing = conn.execute(
                sa.select(sa.func.count())
                .select_from(webhook_deliveries)
                .where(webhook_deliveries.c.event_id == id_to_bytes(event_id))
            ).scalar_one()
            if existing + len(targets) > DELIVERIES_PER_EVENT_MAX:
                raise ReplayLimitReached(
                    f"event {event.public_id} has had {existing} deliveries; "
                    f"at most {DELIVERIES_PER_EVENT_MAX}"
                )
            added = [self._add_delivery(conn, id_to_bytes(event_id), t, now_ns) for t in targets]
        log.info("event %s replayed to %d endpoints", event.public_id, len(added))
        return added

    def deliveries(self, merchant_id: int, event_id: int) -> list[Delivery]:
        """The event's deliveries, oldest first, each with its attempts. `EventNotFound`."""
        with read_transaction(self._engine) as conn:
            _owned_event(conn, merchant_id, event_id)
            rows = conn.execute(
                sa.select(webhook_deliveries)
                .where(webhook_deliveries.c.event_id == id_to_bytes(event_id))
                .order_by(webhook_deliveries.c.id)
                .limit(DELIVERIES_PER_EVENT_MAX)
            ).all()
            attempts = conn.execute(
                sa.select(webhook_attempts)
                .where(webhook_attempts.c.delivery_id.in_([row.id for row in rows]))
                .order_by(webhook_attempts.c.delivery_id, webhook_attempts.c.number)
            ).all()
        log_of: dict[bytes, list[Attempt]] = {row.id: [] for row in rows}
        for attempt in attempts:
            log_of[attempt.delivery_id].append(_attempt(attempt))
        return [_delivery(row, tuple(log_of[row.id])) for row in rows]

    def _add_delivery(
        self, conn: sa.Connection, event_id: bytes, endpoint_id: bytes, now_ns: int
    ) -> int:
        delivery_id = self._ids.next_id()
        _INSERT_DELIVERY.run(
            conn,
            id=id_to_bytes(delivery_id),
            event_id=event_id,
            endpoint_id=endpoint_id,
            status=DeliveryStatus.PENDING.value,
            next_attempt_at=now_ns,
            created_at=now_ns,
        )
        return delivery_id


def _free_slot(conn: sa.Connection, merchant: bytes) -> int:
    taken = set(
        conn.execute(
            sa.select(webhook_endpoints.c.slot).where(webhook_endpoints.c.merchant_id == merchant)
        ).scalars()
    )
    free = [slot for slot in range(ENDPOINTS_PER_MERCHANT_MAX) if slot not in taken]
    if not free:
        raise EndpointLimitReached(
            f"a merchant has at most {ENDPOINTS_PER_MERCHANT_MAX} webhook endpoints"
        )
    return free[0]


def _owned_endpoint(conn: sa.Connection, merchant_id: int, endpoint_id: int) -> Any:
    row = conn.execute(
        sa.select(webhook_endpoints).where(
            webhook_endpoints.c.id == _id_bytes(endpoint_id),
            webhook_endpoints.c.merchant_id == id_to_bytes(merchant_id),
        )
    ).first()
    if row is None:
        raise EndpointNotFound(f"no webhook endpoint {endpoint_id:032x}")
    return row


def _owned_event(
    conn: sa.Connection, merchant_id: int, event_id: int, *, lock: bool = False
) -> Any:
    query = sa.select(webhook_events).where(
        webhook_events.c.id == _id_bytes(event_id),
        webhook_events.c.merchant_id == id_to_bytes(merchant_id),
    )
    row = conn.execute(query.with_for_update() if lock else query).first()
    if row is None:
        raise EventNotFound(f"no event {event_public_id(event_id)}")
    return row


def _id_bytes(value: int) -> bytes:
    """An id from outside (a merchant's request): one that cannot be an id is unknown."""
    return id_to_bytes(value) if 0 <= value < 1 << 128 else b""


def _set_status(conn: sa.Connection, endpoint_id: bytes, status: EndpointStatus) -> None:
    conn.execute(
        sa.update(webhook_endpoints)
        .where(webhook_endpoints.c.id == endpoint_id)
        .values(status=status.value)
    )


def _endpoint(row: Mapping[str, Any]) -> Endpoint:
    types_text = row["event_types"]
    types = (
        frozenset()
        if types_text == _ALL_TYPES
        else frozenset(EventType(t) for t in types_text.split(_TYPE_SEPARATOR))
    )
    return Endpoint(
        id=id_from_bytes(row["id"]),
        merchant_id=id_from_bytes(row["merchant_id"]),
        url=row["url"],
        event_types=types,
        status=EndpointStatus(row["status"]),
        created_at_ns=int(row["created_at"]),
    )


def _event(row: Any) -> Event:
    return Event(
        id=id_from_bytes(row.id),
        merchant_id=id_from_bytes(row.merchant_id),
        type=EventType(row.type),
        payload=row.payload,
        created_at_ns=int(row.created_at),
    )


def _attempt(row: Any) -> Attempt:
    return Attempt(
        number=int(row.number),
        at_ns=int(row.at),
        status_code=row.status_code,
        duration_ms=int(row.duration_ms),
        error=row.error,
    )


def _delivery(row: Any, attempts: tuple[Attempt, ...]) -> Delivery:
    return Delivery(
        id=id_from_bytes(row.id),
        event_id=id_from_bytes(row.event_id),
        endpoint_id=id_from_bytes(row.endpoint_id),
        status=DeliveryStatus(row.status),
        attempts=int(row.attempts),
        next_attempt_at_ns=int(row.next_attempt_at),
        last_attempt_at_ns=row.last_attempt_at,
        last_status_code=row.last_status_code,
        last_error=row.last_error,
        delivered_at_ns=row.delivered_at,
        created_at_ns=int(row.created_at),
        log=attempts,
    )


# -- the worker -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Claim:
    """A delivery taken under a lease, with what sending it needs."""

    delivery_id: bytes
    endpoint_id: bytes
    event_id: bytes
    url: str
    secret_sealed: bytes
    payload: str
    attempts: int
    created_at_ns: int
    lease_ns: int


@dataclass(frozen=True, slots=True)
class _Outcome:
    at_ns: int
    status_code: int | None
    duration_ms: int
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class WebhookWorker:
    """Sends due deliveries. Any number of workers may run at once, on any servers:
    a delivery is taken by compare-and-set under a lease, so no attempt is sent twice
    at the same time. `transport` is httpx's (tests and the simulator pass their own);
    `randbelow` draws the retry jitter; `timeout_s` is at most `DELIVERY_TIMEOUT_S`."""

    def __init__(
        self,
        engine: sa.Engine,
        keyring: KeyRing,
        clock: Clock,
        *,
        transport: httpx.BaseTransport | None = None,
        randbelow: RandBelow = secrets.randbelow,
        timeout_s: float = DELIVERY_TIMEOUT_S,
    ) -> None:
        assert 0 < timeout_s <= DELIVERY_TIMEOUT_S
        # A run sends its deliveries in waves of `SENDERS_MAX`, each within the timeout.
        assert math.ceil(DELIVERIES_PER_RUN_MAX / SENDERS_MAX) * timeout_s < LEASE_S
        self._engine = engine
        self._keyring = keyring
        self._clock = clock
        self._ids = IdGenerator(clock)
        self._randbelow = randbelow
        self._client = httpx.Client(
            transport=transport,
            timeout=httpx.Timeout(timeout_s),
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT},
        )
        self._senders = ThreadPoolExecutor(SENDERS_MAX, thread_name_prefix="webhook-sender")

    def close(self) -> None:
        self._senders.shutdown(wait=True)
        self._client.close()

    def __enter__(self) -> WebhookWorker:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def deliver_due(self, limit: int = DELIVERIES_PER_RUN_MAX) -> DeliveryStats:
        """Take up to `limit` due deliveries, send them (`SENDERS_MAX` at once), record
        each attempt and what follows: succeeded on a 2xx answer; otherwise retried on
        the schedule, or failed once out of attempts or out of the window."""
        assert 1 <= limit <= DELIVERIES_PER_RUN_MAX
        claims = self._claim(limit)
        if not claims:
            return DeliveryStats()
        outcomes = list(self._senders.map(self._send, claims))
        return self._record(claims, outcomes)

    def run_forever(self, stop: threading.Event, every_s: float = POLL_EVERY_S) -> None:
        """Deliver until `stop` is set: at once again after a full run, else after
        `every_s`. A database error is logged and the loop goes on (for a thread)."""
        while not stop.is_set():
            try:
                stats = self.deliver_due()
            except sa.exc.SQLAlchemyError:
                log.exception("webhook delivery run failed; trying again in %s s", every_s)
                stats = DeliveryStats()
            if stats.claimed < DELIVERIES_PER_RUN_MAX:
                stop.wait(every_s)

    def _claim(self, limit: int) -> list[_Claim]:
        now_ns = self._clock.now_ns()
        lease_ns = now_ns + LEASE_S * NS_PER_S
        d = webhook_deliveries
        # Most passes find nothing due: look first without the write lock, which every
        # payment on a SQLite file needs too.
        with self._engine.connect() as conn:
            anything_due = conn.execute(
                sa.select(d.c.id)
                .where(d.c.status == DeliveryStatus.PENDING.value, d.c.next_attempt_at <= now_ns)
                .limit(1)
            ).first()
        if anything_due is None:
            return []
        with write_transaction(self._engine) as conn:
            due = conn.execute(
                sa.select(d.c.id, d.c.endpoint_id, d.c.next_attempt_at)
                .where(d.c.status == DeliveryStatus.PENDING.value, d.c.next_attempt_at <= now_ns)
                .order_by(d.c.next_attempt_at, d.c.id)
                .limit(limit * DELIVERIES_PER_ENDPOINT_PER_RUN_MAX)
            ).all()
            won: list[bytes] = []
            # One order for every worker, so that two never wait on each other's rows.
            for row in sorted(_fair_share(due, limit), key=lambda row: bytes(row.id)):
                taken = conn.execute(
                    sa.update(d)
                    .where(
                        d.c.id == row.id,
                        d.c.status == DeliveryStatus.PENDING.value,
                        d.c.next_attempt_at == row.next_attempt_at,
                    )
                    .values(next_attempt_at=lease_ns)
                )
                if taken.rowcount == 1:
                    won.append(bytes(row.id))
            if not won:
                return []
            rows = conn.execute(
                sa.select(
                    d.c.id,
                    d.c.endpoint_id,
                    d.c.event_id,
                    d.c.attempts,
                    d.c.created_at,
                    webhook_endpoints.c.url,
                    webhook_endpoints.c.secret_sealed,
                    webhook_events.c.payload,
                )
                .select_from(
                    d.join(webhook_endpoints, webhook_endpoints.c.id == d.c.endpoint_id).join(
                        webhook_events, webhook_events.c.id == d.c.event_id
                    )
                )
                .where(d.c.id.in_(won))
            ).all()
        return [_claim_of(row, lease_ns) for row in rows]

    def _send(self, claim: _Claim) -> _Outcome:
        """One HTTP attempt; never raises for anything the endpoint or network does."""
        body = claim.payload.encode("utf-8")
        started_ns = time.monotonic_ns()
        status_code: int | None = None
        error: str | None = None
        try:
            secret = self._keyring.open(claim.secret_sealed, _secret_aad(claim.endpoint_id))
            timestamp_s = self._clock.now_ns() // NS_PER_S
            headers = {
                "Content-Type": "application/json",
                SIGNATURE_HEADER: signature_header(secret.decode("ascii"), timestamp_s, body),
                EVENT_ID_HEADER: event_public_id(id_from_bytes(claim.event_id)),
            }
            # Streamed and closed unread: the answer's body is never needed.
            with self._client.stream("POST", claim.url, content=body, headers=headers) as answer:
                status_code = answer.status_code
            if not 200 <= status_code < 300:
                error = f"HTTP {status_code}"
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            error = f"{type(exc).__name__}: {exc}"
        except SealedDataError as exc:
            error = f"signing secret unreadable: {exc.code}"
        duration_ms = (time.monotonic_ns() - started_ns) // 1_000_000
        return _Outcome(self._clock.now_ns(), status_code, duration_ms, _bounded(error))

    def _record(self, claims: Sequence[_Claim], outcomes: Sequence[_Outcome]) -> DeliveryStats:
        """Log each attempt and write what follows, if the delivery is still this
        worker's (its lease did not lapse, its endpoint was not disabled); an attempt
        whose delivery was deleted meanwhile (with its endpoint) is not logged."""
        ends: Counter[DeliveryStatus] = Counter()
        d = webhook_deliveries
        pairs = sorted(zip(claims, outcomes, strict=True), key=lambda p: p[0].delivery_id)
        with write_transaction(self._engine) as conn:
            for claim, outcome in pairs:
                now = conn.execute(
                    sa.select(d.c.status, d.c.next_attempt_at)
                    .where(d.c.id == claim.delivery_id)
                    .with_for_update()
                ).first()
                if now is None:
                    continue
                number = claim.attempts + 1
                conn.execute(sa.insert(webhook_attempts).values(self._attempt_row(claim, outcome)))
                if now.status != DeliveryStatus.PENDING or now.next_attempt_at != claim.lease_ns:
                    continue
                values = self._after(claim, outcome, number)
                conn.execute(sa.update(d).where(d.c.id == claim.delivery_id).values(values))
                ends[DeliveryStatus(values["status"])] += 1
        for claim, outcome in pairs:
            if not outcome.ok:
                log.info(
                    "webhook delivery %032x to endpoint %032x: %s",
                    id_from_bytes(claim.delivery_id),
                    id_from_bytes(claim.endpoint_id),
                    outcome.error,
                )
        return DeliveryStats(
            claimed=len(claims),
            succeeded=ends[DeliveryStatus.SUCCEEDED],
            retrying=ends[DeliveryStatus.PENDING],
            failed=ends[DeliveryStatus.FAILED],
        )

    def _attempt_row(self, claim: _Claim, outcome: _Outcome) -> dict[str, Any]:
        return {
            "id": id_to_bytes(self._ids.next_id()),
            "delivery_id": claim.delivery_id,
            "number": claim.attempts + 1,
            "at": outcome.at_ns,
            "status_code": outcome.status_code,
            "duration_ms": outcome.duration_ms,
            "error": outcome.error,
        }

    def _after(self, claim: _Claim, outcome: _Outcome, number: int) -> dict[str, Any]:
        """The delivery's columns after attempt `number` ended with `outcome`."""
        values: dict[str, Any] = {
            "attempts": number,
            "last_attempt_at": outcome.at_ns,
            "last_status_code": outcome.status_code,
            "last_error": outcome.error,
        }
        if outcome.ok:
            return {
                **values,
                "status": DeliveryStatus.SUCCEEDED.value,
                "next_attempt_at": outcome.at_ns,
                "delivered_at": outcome.at_ns,
            }
        next_ns = _next_attempt_at_ns(number, outcome.at_ns, claim.created_at_ns, self._randbelow)
        if next_ns is None:
            return {
                **values,
                "status": DeliveryStatus.FAILED.value,
                "next_attempt_at": outcome.at_ns,
            }
        return {**values, "status": DeliveryStatus.PENDING.value, "next_attempt_at": next_ns}


def _fair_share(due: Sequence[Any], limit: int) -> list[Any]:
    """Up to `limit` of the due rows, in order, at most
    `DELIVERIES_PER_ENDPOINT_PER_RUN_MAX` of any one endpoint."""
    per_endpoint: Counter[bytes] = Counter()
    chosen = []
    for row in due:
        endpoint = bytes(row.endpoint_id)
        if per_endpoint[endpoint] < DELIVERIES_PER_ENDPOINT_PER_RUN_MAX:
            per_endpoint[endpoint] += 1
            chosen.append(row)
            if len(chosen) == limit:
                break
    return chosen


def _claim_of(row: Any, lease_ns: int) -> _Claim:
    return _Claim(
        delivery_id=bytes(row.id),
        endpoint_id=bytes(row.endpoint_id),
        event_id=bytes(row.event_id),
        url=row.url,
        secret_sealed=bytes(row.secret_sealed),
        payload=row.payload,
        attempts=int(row.attempts),
        created_at_ns=int(row.created_at),
        lease_ns=lease_ns,
    )


def _bounded(error: str | None) -> str | None:
    if error is None or len(error) <= ERROR_CHARS_MAX:
        return error
    return error[: ERROR_CHARS_MAX - 1] + "…"
