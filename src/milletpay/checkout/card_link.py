"""The checkout's link to the card network switch: ISO 8583 over one TCP connection, for
callers that are not asyncio (the API's request handlers run in worker threads).

`SwitchLink` is what the checkout's card funding needs: `exchange(message)` answers the
switch's answer within the link's response timeout, or raises `SwitchUnreachable` (no
connection: the message was not sent) or `NoAnswer` (it may have been sent and not
answered: the caller reverses it). `CardNetworkLink` is the real one: an event loop in a
thread of its own drives an `Iso8583Client`, opened on first use and again after it is
lost. It never retries a request by itself (only the caller knows whether a repeat is
safe) and never logs a message (they carry token numbers and cryptograms).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Final, Protocol

from milletpay.core.errors import MilletError
from milletpay.network.iso8583 import Message
from milletpay.network.link import Iso8583Client, LinkClosed, ResponseTimeout

__all__ = [
    "CONNECT_TIMEOUT_S",
    "RESPONSE_TIMEOUT_S",
    "CardNetworkLink",
    "NoAnswer",
    "SwitchLink",
    "SwitchUnreachable",
]

#: The wait for a connection to the switch.
CONNECT_TIMEOUT_S: Final = 2.0
#: The wait for the switch's answer (the switch waits 5 s for the issuer, then stands in
#: or answers 91 itself).
RESPONSE_TIMEOUT_S: Final = 8.0


class SwitchUnreachable(MilletError):
    """No connection to the switch: the message was not sent."""

    code = "card_network_unavailable"


class NoAnswer(MilletError):
    """The message may have reached the switch, and no answer came in time."""

    code = "card_network_timeout"


class SwitchLink(Protocol):
    def exchange(self, message: Message) -> Message: ...

    def close(self) -> None: ...


class CardNetworkLink:
    """A connection to the switch at `host`:`port`, usable from any thread."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        response_timeout_s: float = RESPONSE_TIMEOUT_S,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
    ) -> None:
        assert response_timeout_s > 0 and connect_timeout_s > 0
        self._address = (host, port)
        self._response_timeout_s = response_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="card-network-link", daemon=True
        )
        self._thread.start()
        self._link: tuple[Iso8583Client, asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._connecting: asyncio.Lock | None = None

    def __repr__(self) -> str:
        return f"CardNetworkLink({self._address[0]}:{self._address[1]})"

    def exchange(self, message: Message) -> Message:
        """The switch's answer to `message`; `SwitchUnreachable` or `NoAnswer`."""
        timeout_s = self._response_timeout_s
        future = asyncio.run_coroutine_threadsafe(self._exchange(message, timeout_s), self._loop)
        return future.result()

    def close(self) -> None:
        if not self._loop.is_running():
            return
        asyncio.run_coroutine_threadsafe(self._drop(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    async def _exchange(self, message: Message, timeout_s: float) -> Message:
        client = await self._client()
        try:
            return await client.request(message, timeout_s=timeout_s)
        except ResponseTimeout:
            raise NoAnswer(f"no answer within {timeout_s} s") from None
        except LinkClosed:
            await self._drop()
            raise NoAnswer("the link closed before the answer") from None

    async def _client(self) -> Iso8583Client:
        """The open connection, or a new one; one the switch hung up on (its end of
        stream read) is replaced before sending, so it costs no reversal."""
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._link is not None:
                client, reader, writer = self._link
                if not (reader.at_eof() or writer.is_closing()):
                    return client
                await self._drop()
            host, port = self._address
            try:
                async with asyncio.timeout(self._connect_timeout_s):
                    reader, writer = await asyncio.open_connection(host, port)
            except (OSError, TimeoutError) as exc:
                raise SwitchUnreachable(f"no connection ({type(exc).__name__})") from None
            client = Iso8583Client(reader, writer)
            self._link = (client, reader, writer)
            return client

    async def _drop(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            await link[0].close()
