"""The 2-byte length prefix: frames read back whole, and every broken stream refused."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from milletpay.network.framing import (
    FRAME_BYTES_MAX,
    FrameTimeout,
    FramingError,
    read_frame,
    write_frame,
)


def _read_all(data: bytes, *, max_bytes: int = 1024, eof: bool = True) -> list[bytes]:
    """Every frame in `data`, read with `read_frame` until the stream ends."""

    async def main() -> list[bytes]:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        if eof:
            reader.feed_eof()
        frames = []
        while (frame := await read_frame(reader, timeout_s=0.2, max_bytes=max_bytes)) is not None:
            frames.append(frame)
        return frames

    return asyncio.run(main())


def test_frames_are_read_back_in_order() -> None:
    assert _read_all(b"\x00\x03abc\x00\x01z") == [b"abc", b"z"]


def test_a_clean_close_between_frames_is_the_end() -> None:
    assert _read_all(b"") == []


def test_a_frame_of_max_bytes_is_accepted_and_one_more_is_refused() -> None:
    assert _read_all(b"\x00\x05" + bytes(5), max_bytes=5) == [bytes(5)]
    with pytest.raises(FramingError, match="length prefix 6, over 5"):
        _read_all(b"\x00\x06" + bytes(6), max_bytes=5)


def test_a_zero_length_is_refused() -> None:
    with pytest.raises(FramingError, match="length prefix 0"):
        _read_all(b"\x00\x00")


@pytest.mark.parametrize(
    ("data", "what"),
    [
        (b"\x00", "length prefix: 1 of 2 bytes came"),
        (b"\x00\x05abc", "frame of 5 bytes: 3 of 5 bytes came"),
    ],
)
def test_a_connection_closed_mid_frame_is_refused(data: bytes, what: str) -> None:
    with pytest.raises(FramingError, match=what):
        _read_all(data)


def test_a_peer_that_stops_sending_times_out() -> None:
    with pytest.raises(FrameTimeout, match=r"no whole frame within 0\.2 s"):
        _read_all(b"\x00\x05ab", eof=False)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200), st.integers(1, 64))
def test_garbage_gives_frames_or_a_framing_error(data: bytes, max_bytes: int) -> None:
    try:
        frames = _read_all(data, max_bytes=max_bytes)
    except FramingError:
        return
    assert sum(2 + len(frame) for frame in frames) == len(data)


def test_write_frame_prefixes_the_length_big_endian() -> None:
    written: list[bytes] = []

    class Writer:
        def write(self, data: bytes) -> None:
            written.append(data)

    write_frame(Writer(), b"x" * 258)  # type: ignore[arg-type]
    assert written == [b"\x01\x02" + b"x" * 258]
    with pytest.raises(FramingError, match="0 bytes"):
        write_frame(Writer(), b"")  # type: ignore[arg-type]
    with pytest.raises(FramingError, match=f"{FRAME_BYTES_MAX + 1} bytes"):
        write_frame(Writer(), bytes(FRAME_BYTES_MAX + 1))  # type: ignore[arg-type]


def test_a_close_while_waiting_for_the_next_frame_is_the_end() -> None:
    async def main() -> bytes | None:
        reader = asyncio.StreamReader()
        asyncio.get_running_loop().call_later(0.05, reader.feed_eof)
        return await read_frame(reader, timeout_s=1.0, max_bytes=16)

    assert asyncio.run(main()) is None
