"""ISO 8583 links over TCP: `Iso8583Server` answers the requests a peer sends, and
`Iso8583Client` sends requests and matches the answers, many at a time on one connection.

Both answer 0800 network management (sign-on, sign-off, echo test) themselves. A frame
that does not decode is logged and skipped, since the next frame still starts where its
length says; a broken frame closes the connection, since nothing after it can be trusted.
Every queue is bounded. It owns the exchange only: what a request means is the handler's.
Logs show the masked `repr` of messages and errors that name fields, never card data.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Final

from milletpay.core.errors import MilletError
from milletpay.network.framing import FramingError, read_frame, write_frame
from milletpay.network.iso8583 import (
    MESSAGE_BYTES_MAX,
    Iso8583Error,
    Message,
    decode,
    encode,
    is_request,
    match_key,
    response_to,
)

__all__ = [
    "CONNECTIONS_MAX",
    "CONNECT_TIMEOUT_S",
    "IDLE_TIMEOUT_S",
    "IN_FLIGHT_PER_CONNECTION_MAX",
    "RESPONSE_TIMEOUT_S",
    "Handler",
    "Iso8583Client",
    "Iso8583Server",
    "LinkClosed",
    "ResponseTimeout",
    "network_management_response",
]

log = logging.getLogger(__name__)

CONNECTIONS_MAX: Final = 64  # a server's open connections; one more is closed at once
IN_FLIGHT_PER_CONNECTION_MAX: Final = 32  # requests awaiting an answer on one connection
IDLE_TIMEOUT_S: Final = 300.0  # a server closes a connection silent this long
RESPONSE_TIMEOUT_S: Final = 10.0  # a client's default wait for an answer
CONNECT_TIMEOUT_S: Final = 5.0
NETWORK_MANAGEMENT_MTI: Final = "0800"
SYSTEM_MALFUNCTION: Final = "96"

Handler = Callable[[Message], Awaitable[Message | None]]


class ResponseTimeout(MilletError):
    """No answer to a request within its timeout."""

    code = "iso8583_response_timeout"


class LinkClosed(MilletError):
    """The connection is closed: no answer can come on it."""

    code = "iso8583_link_closed"


def network_management_response(request: Message) -> Message:
    """The answer to a 0800: its code (sign-on, sign-off, echo test) echoed, 39 = 00."""
    assert request.mti == NETWORK_MANAGEMENT_MTI
    return response_to(request, "00")


class Iso8583Server:
    """Listens on `host`:`port` (0: any free port, see `port`) and calls `handler` for each
    request other than 0800; a handler returning None sends no answer."""

    def __init__(
        self,
        handler: Handler,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        connections_max: int = CONNECTIONS_MAX,
        in_flight_max: int = IN_FLIGHT_PER_CONNECTION_MAX,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
    ) -> None:
        assert connections_max >= 1 and in_flight_max >= 1 and idle_timeout_s > 0
        self._handler = handler
        self._host = host
        self._port = port
        self._connections_max = connections_max
        self._in_flight_max = in_flight_max
        self._idle_timeout_s = idle_timeout_s
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None, "start() first"
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self._host, self._port)

    async def close(self) -> None:
        """Stops listening and closes every connection."""
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> Iso8583Server:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._connections) >= self._connections_max:
            log.warning("connection refused: %d connections open", len(self._connections))
            await _close(writer)
            return
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            # close() cancels connections; a cancelled connection task must end quietly,
            # since asyncio logs the cancellation of a client_connected_cb as an error.
            with contextlib.suppress(asyncio.CancelledError):
                await self._read_requests(reader, writer)
        finally:
            self._connections.discard(task)
            await _close(writer)

    async def _read_requests(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        slots = asyncio.Semaphore(self._in_flight_max)
        answering: set[asyncio.Task[None]] = set()
        try:
            while True:
                request = await _next_message(reader, self._idle_timeout_s)
                if request is None:
                    return
                if isinstance(request, Iso8583Error):
                    continue
                if not is_request(request.mti):
                    log.warning("not a request, ignored: %r", request)
                    continue
                await slots.acquire()  # at the limit, stop reading: the peer waits
                task = asyncio.create_task(self._answer(request, writer, slots))
                answering.add(task)
                task.add_done_callback(answering.discard)
        finally:
            for task in answering:
                task.cancel()
            await asyncio.gather(*answering, return_exceptions=True)

    async def _answer(
        self, request: Message, writer: asyncio.StreamWriter, slots: asyncio.Semaphore
    ) -> None:
        try:
            response = await self._response(request)
            if response is not None:
                await _send(writer, response)
        except Iso8583Error as exc:
            log.error("answer to %s not sent: %s", request.mti, exc)
        except (ConnectionError, FramingError) as exc:
            log.warning("answer to %s not sent: %s", request.mti, exc)
        finally:
            slots.release()

    async def _response(self, request: Message) -> Message | None:
        if request.mti == NETWORK_MANAGEMENT_MTI:
            return network_management_response(request)
        try:
            return await self._handler(request)
        except Exception:
            # One failing request must not take the link down; the peer gets 96.
            log.exception("handler failed on %r", request)
            return response_to(request, SYSTEM_MALFUNCTION)


class Iso8583Client:
    """One connection to an ISO 8583 server. `request` sends a message and returns its
    answer, matched by `iso8583.match_key`; any number of tasks may call it at once, up
    to `in_flight_max` requests awaiting answers."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        in_flight_max: int = IN_FLIGHT_PER_CONNECTION_MAX,
    ) -> None:
        assert in_flight_max >= 1
        self._writer = writer
        self._slots = asyncio.Semaphore(in_flight_max)
        self._pending: dict[tuple[str, str, str], asyncio.Future[Message]] = {}
        #: The bytes sent for each pending key, and how many callers wait for its answer:
        #: a repeat of the same request shares the answer instead of being sent again.
        self._sent: dict[tuple[str, str, str], bytes] = {}
        self._waiters: dict[tuple[str, str, str], int] = {}
        self._closed = False
        self._reading = asyncio.create_task(self._read_responses(reader))

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        *,
        timeout_s: float = CONNECT_TIMEOUT_S,
        in_flight_max: int = IN_FLIGHT_PER_CONNECTION_MAX,
    ) -> Iso8583Client:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer, in_flight_max=in_flight_max)

    async def request(self, message: Message, *, timeout_s: float = RESPONSE_TIMEOUT_S) -> Message:
        """The answer to `message`; `ResponseTimeout` when none comes within `timeout_s`
        (the wait for an in-flight slot included), `LinkClosed` when the connection ends."""
        if not is_request(message.mti):
            raise Iso8583Error(f"MTI {message.mti} is not a request")
        key = match_key(message)
        data = encode(message)
        try:
            async with asyncio.timeout(timeout_s), self._slots:
                return await self._exchange(key, data)
        except ConnectionError as exc:
            raise LinkClosed(f"connection lost: {type(exc).__name__}") from None
        except TimeoutError:
            raise ResponseTimeout(
                f"no answer to {message.mti} STAN {key[1]} within {timeout_s} s"
            ) from None

    async def close(self) -> None:
        self._closed = True
        self._reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reading
        self._fail_pending()
        await _close(self._writer)

    async def __aenter__(self) -> Iso8583Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def _exchange(self, key: tuple[str, str, str], data: bytes) -> Message:
        if self._closed:
            raise LinkClosed("the connection is closed")
        future = self._pending.get(key)
        if future is not None and self._sent[key] != data:
            raise Iso8583Error(
                f"another {key[0]} with STAN {key[1]} is already awaiting its answer"
            )
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._pending[key], self._sent[key], self._waiters[key] = future, data, 0
            write_frame(self._writer, data)
        # else: the same request again (a retry while the first is out): one answer for
        # both, and nothing sent twice.
        self._waiters[key] += 1
        try:
            await self._writer.drain()
            # Shielded: a caller that gives up does not take the answer from the others.
            return await asyncio.shield(future)
        finally:
            if self._pending.get(key) is future:  # (not if the link failed meanwhile)
                self._waiters[key] -= 1
                if not self._waiters[key]:
                    del self._pending[key], self._sent[key], self._waiters[key]

    async def _read_responses(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                message = await _next_message(reader, None)
                if message is None:
                    return
                if isinstance(message, Message):
                    await self._receive(message)
        finally:
            self._closed = True
            self._fail_pending()

    async def _receive(self, message: Message) -> None:
        if message.mti == NETWORK_MANAGEMENT_MTI:  # the server's echo test
            await _send(self._writer, network_management_response(message))
            return
        if is_request(message.mti):
            log.warning("a request the client does not answer, ignored: %r", message)
            return
        future = self._pending.get(match_key(message))
        if future is None or future.done():
            log.warning("an answer no request awaits, ignored: %r", message)
            return
        future.set_result(message)

    def _fail_pending(self) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(LinkClosed("the connection closed before the answer"))
        self._pending.clear()
        self._sent.clear()
        self._waiters.clear()


async def _next_message(
    reader: asyncio.StreamReader, timeout_s: float | None
) -> Message | Iso8583Error | None:
    """The next message; the `Iso8583Error` of a frame that did not decode (logged, the
    stream still in step); None when the connection ended or its framing broke."""
    try:
        frame = await read_frame(reader, timeout_s=timeout_s, max_bytes=MESSAGE_BYTES_MAX)
    except FramingError as exc:
        log.warning("connection closed: %s", exc)
        return None
    if frame is None:
        return None
    try:
        return decode(frame)
    except Iso8583Error as exc:
        log.warning("a message that does not decode, skipped: %s", exc)
        return exc


async def _send(writer: asyncio.StreamWriter, message: Message) -> None:
    write_frame(writer, encode(message))
    await writer.drain()


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()
