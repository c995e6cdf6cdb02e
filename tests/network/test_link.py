"""The ISO 8583 link: a real server on 127.0.0.1, real clients, real sockets."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from milletpay.network import iso8583
from milletpay.network.framing import FrameTimeout, FramingError, read_frame, write_frame
from milletpay.network.iso8583 import Message
from milletpay.network.link import (
    Iso8583Client,
    Iso8583Server,
    LinkClosed,
    ResponseTimeout,
)

from .messages import authorization, sign_on

TEST_TIMEOUT_S = 5.0


async def _approve(request: Message) -> Message | None:
    return iso8583.response_to(request, "00", {38: "A1B2C3"})


def _run(
    scenario: Callable[[Iso8583Server], Awaitable[None]],
    handler: Callable[[Message], Awaitable[Message | None]] = _approve,
    **limits: int,
) -> None:
    """Runs `scenario` against a server on a free port of 127.0.0.1."""

    async def main() -> None:
        async with Iso8583Server(handler, **limits) as server:  # type: ignore[arg-type]
            await asyncio.wait_for(scenario(server), TEST_TIMEOUT_S)

    asyncio.run(main())


async def _raw_exchange(server: Iso8583Server, frames: list[bytes]) -> bytes | None:
    """Writes `frames` as they are, then reads one frame back (None: the server closed the
    connection, cleanly or with a reset because our bytes were still unread)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        for frame in frames:
            writer.write(frame)
        await writer.drain()
        return await read_frame(reader, timeout_s=TEST_TIMEOUT_S, max_bytes=4096)
    except (FramingError, ConnectionError) as exc:
        assert not isinstance(exc, FrameTimeout)
        return None
    finally:
        writer.close()


def _echo_frame(stan: str) -> bytes:
    data = iso8583.encode(sign_on(stan).with_fields({70: iso8583.ECHO_TEST}))
    return len(data).to_bytes(2, "big") + data


def test_echo_test_is_answered_by_the_server_itself() -> None:
    async def scenario(server: Iso8583Server) -> None:
        async with await Iso8583Client.connect("127.0.0.1", server.port) as client:
            echo = sign_on("000007").with_fields({70: iso8583.ECHO_TEST})
            answer = await client.request(echo)
        assert answer.mti == "0810"
        assert (answer.text(39), answer.text(70), answer.text(11)) == ("00", "301", "000007")

    async def never_called(request: Message) -> Message | None:
        raise AssertionError("0800 is the server's own")

    _run(scenario, never_called)


def test_sign_on_and_sign_off() -> None:
    async def scenario(server: Iso8583Server) -> None:
        async with await Iso8583Client.connect("127.0.0.1", server.port) as client:
            on = await client.request(sign_on("000001"))
            off = await client.request(sign_on("000002").with_fields({70: iso8583.SIGN_OFF}))
        assert (on.text(70), on.text(39)) == ("001", "00")
        assert (off.text(70), off.text(39)) == ("002", "00")

    _run(scenario)


def test_the_handler_answers_an_authorization() -> None:
    async def scenario(server: Iso8583Server) -> None:
        async with await Iso8583Client.connect("127.0.0.1", server.port) as client:
            answer = await client.request(authorization())
        assert answer.mti == "0110"
        assert (answer.text(39), answer.text(38)) == ("00", "A1B2C3")
        assert iso8583.match_key(answer) == iso8583.match_key(authorization())

    _run(scenario)


def test_concurrent_requests_answered_out_of_order_reach_their_callers() -> None:
    answered: list[str] = []
    second_answered = asyncio.Event()

    async def handler(request: Message) -> Message | None:
        stan = request.text(11)
        if stan == "000001":
            await second_answered.wait()  # the first request is answered last
        else:
            second_answered.set()
        answered.append(stan)
        return iso8583.response_to(request, "51")

    async def scenario(server: Iso8583Server) -> None:
        async with await Iso8583Client.connect("127.0.0.1", server.port) as client:
            first = authorization("000001").with_fields({4: "000000000111"})
            second = authorization("000002").with_fields({4: "000000000222"})
            answers = await asyncio.gather(client.request(first), client.request(second))
        assert answered == ["000002", "000001"]
        assert [a.text(11) for a in answers] == ["000001", "000002"]
        assert [a.text(4) for a in answers] == ["000000000111", "000000000222"]

    _run(scenario, handler)


def test_the_same_stan_on_another_terminal_is_another_request() -> None:
    async def scenario(server: Iso8583Server) -> None:
        async with await Iso8583Client.connect("127.0.0.1", server.port) as client:
            answers = await asyncio.gather(
                client.request(authorization("000001", "TERM0001")),
                client.request(authorization("000001", "TERM0002")),
            )
        assert [a.text(41) for a in answers] == ["TERM0001", "TERM0002"]

    _run(scenario)


def test_a_repeat_of_a_request_in_flight_shares_its_answer() -> None:
    """A retry sent while the first is still out (a reversal repeated while a slow issuer
    works) is not sent again: both callers get the one answer. Another request under the
    same key is refused; a caller that gives up leaves the answer to the others."""
    received: list[str] = []
    release = asyncio.Event()

    async def handler(request: Message) -> Message | None:
        received.append(request.text(11))
        await release.wait()
        return await _approve(request)

    async def scenario(server: Iso8583Server) -> None:
        async with await Iso8583Client.connect("127.0.0.1", server.port) as client:
            request = authorization("000001")
            impatient = asyncio.ensure_future(client.request(request, timeout_s=0.05))
            first = asyncio.ensure_future(client.request(request))
            second = asyncio.ensure_future(client.request(request))
            with pytest.raises(ResponseTimeout):
                await impatient
            other = request.with_fields({4: "000000000999"})
            with pytest.raises(iso8583.Iso8583Error, match="another 0100 with STAN 000001"):
                await client.request(other)
            release.set()
            answers = await asyncio.gather(first, second)
        assert [a.text(39) for a in answers] == ["00", "00"]
        assert received == ["000001"]  # sent once

    _run(scenario, handler)


def test_no_answer_is_a_response_timeout_and_the_link_goes_on() -> None:
    async def handler(request: Message) -> Message | None:
        if request.text(11) == "000001":
            return None  # an issuer that never answers
        return await _approve(request)

    async def scenario(server: Iso8583Server) -> None:
        async with await Iso8583Client.connect("127.0.0.1", server.port) as client:
            with pytest.raises(ResponseTimeout, match="no answer to 0100 STAN 000001"):
                await client.request(authorization("000001"), timeout_s=0.2)
            answer = await client.request(authorization("000002"))
        assert answer.text(39) == "00"

    _run(scenario, handler)


def test_a_failing_handler_answers_96() -> None:
    async def handler(request: Message) -> Message | None:
        raise RuntimeError("the issuer's host fell over")

    async def scenario(server: Iso8583Server) -> None:
        async with await Iso8583Client.connect("127.0.0.1", server.port) as client:
            answer = await client.request(authorization())
        assert answer.text(39) == "96"

    _run(scenario, handler)


def test_a_garbage_frame_is_skipped_and_the_connection_kept() -> None:
    async def scenario(server: Iso8583Server) -> None:
        garbage = b"\x00\x07garbage"
        answer = await _raw_exchange(server, [garbage, _echo_frame("000009")])
        assert answer is not None
        assert iso8583.decode(answer).text(11) == "000009"

    _run(scenario)


def test_an_oversized_length_prefix_closes_the_connection() -> None:
    async def scenario(server: Iso8583Server) -> None:
        assert await _raw_exchange(server, [b"\xff\xff" + bytes(16)]) is None

    _run(scenario)


def test_a_zero_length_prefix_closes_the_connection() -> None:
    async def scenario(server: Iso8583Server) -> None:
        assert await _raw_exchange(server, [b"\x00\x00", _echo_frame("000001")]) is None

    _run(scenario)


def test_a_connection_over_the_limit_is_closed() -> None:
    async def scenario(server: Iso8583Server) -> None:
        async with await Iso8583Client.connect("127.0.0.1", server.port) as first:
            await first.request(sign_on())
            assert await _raw_exchange(server, [_echo_frame("000002")]) is None
            assert (await first.request(sign_on("000003"))).text(39) == "00"

    _run(scenario, connections_max=1)


def test_requests_past_the_in_flight_limit_wait_for_a_slot() -> None:
    running = 0
    most_running = 0

    async def handler(request: Message) -> Message | None:
        nonlocal running, most_running
        running += 1
        most_running = max(most_running, running)
        await asyncio.sleep(0.02)
        running -= 1
        return iso8583.response_to(request, "05")

    async def scenario(server: Iso8583Server) -> None:
        async with await Iso8583Client.connect("127.0.0.1", server.port) as client:
            stans = [f"{n:06d}" for n in range(1, 9)]
            answers = await asyncio.gather(*(client.request(authorization(s)) for s in stans))
        assert [a.text(11) for a in answers] == stans
        assert most_running == 2

    _run(scenario, handler, in_flight_max=2)


def test_a_server_that_goes_away_fails_the_waiting_requests() -> None:
    async def handler(request: Message) -> Message | None:
        await asyncio.sleep(10)
        return None

    async def main() -> None:
        server = Iso8583Server(handler)
        await server.start()
        client = await Iso8583Client.connect("127.0.0.1", server.port)
        waiting = asyncio.create_task(client.request(authorization()))
        await asyncio.sleep(0.1)
        await server.close()
        with pytest.raises(LinkClosed):
            await asyncio.wait_for(waiting, TEST_TIMEOUT_S)
        with pytest.raises(LinkClosed):
            await client.request(authorization("000002"))
        await client.close()

    asyncio.run(main())


def test_the_client_answers_the_servers_echo_test() -> None:
    async def main() -> None:
        accepted: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]]
        accepted = asyncio.Queue()

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await accepted.put((reader, writer))

        network = await asyncio.start_server(on_connect, "127.0.0.1", 0)
        port = network.sockets[0].getsockname()[1]
        client = await Iso8583Client.connect("127.0.0.1", port)
        reader, writer = await accepted.get()
        write_frame(writer, iso8583.encode(sign_on("000005").with_fields({70: "301"})))
        answer = await read_frame(reader, timeout_s=TEST_TIMEOUT_S, max_bytes=4096)
        assert answer is not None
        assert iso8583.decode(answer).text(39) == "00"
        await client.close()
        writer.close()
        network.close()
        await network.wait_closed()

    asyncio.run(main())
