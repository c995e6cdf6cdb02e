"""Frames on a TCP stream: each message preceded by its length, 2 bytes big-endian.

It owns the frame boundaries only, never what is inside a frame. It must never crash on
garbage: a zero or oversized length, a connection closed in the middle of a frame, a
peer that stops sending, each raises a `FramingError` that says which, after which the
stream is out of step and the connection must be closed.
"""

from __future__ import annotations

import asyncio
from typing import Final

from milletpay.core.errors import MilletError

__all__ = [
    "FRAME_BYTES_MAX",
    "LENGTH_PREFIX_BYTES",
    "FrameTimeout",
    "FramingError",
    "read_frame",
    "write_frame",
]

LENGTH_PREFIX_BYTES: Final = 2
FRAME_BYTES_MAX: Final = 0xFFFF  # the largest length a 2-byte prefix can say


class FramingError(MilletError):
    """The stream does not carry a well-formed frame; the connection cannot go on."""

    code = "frame_invalid"


class FrameTimeout(FramingError):
    """No whole frame arrived within the time allowed."""

    code = "frame_timeout"


async def read_frame(
    reader: asyncio.StreamReader, *, timeout_s: float | None, max_bytes: int
) -> bytes | None:
    """The body of the next frame, at most `max_bytes`; None when the peer closed the
    connection cleanly between two frames. `timeout_s` bounds the wait for the whole
    frame, None waits for as long as the connection lives."""
    assert 1 <= max_bytes <= FRAME_BYTES_MAX
    try:
        async with asyncio.timeout(timeout_s):
            return await _read_frame(reader, max_bytes)
    except TimeoutError:
        raise FrameTimeout(f"no whole frame within {timeout_s} s") from None
    except ConnectionError as exc:
        raise FramingError(f"connection lost: {type(exc).__name__}") from None


def write_frame(writer: asyncio.StreamWriter, data: bytes) -> None:
    """Queues one frame (prefix and body in a single write, so that frames from concurrent
    tasks never interleave). The caller awaits `writer.drain()` for back-pressure."""
    if not 1 <= len(data) <= FRAME_BYTES_MAX:
        raise FramingError(f"a frame body of {len(data)} bytes, not 1..{FRAME_BYTES_MAX}")
    writer.write(len(data).to_bytes(LENGTH_PREFIX_BYTES, "big") + data)


async def _read_frame(reader: asyncio.StreamReader, max_bytes: int) -> bytes | None:
    try:
        prefix = await reader.readexactly(LENGTH_PREFIX_BYTES)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise FramingError(
            f"connection closed in the middle of a length prefix: {len(exc.partial)} of "
            f"{LENGTH_PREFIX_BYTES} bytes came"
        ) from None
    length = int.from_bytes(prefix, "big")
    if length == 0:
        raise FramingError("length prefix 0: an empty frame")
    if length > max_bytes:
        raise FramingError(f"length prefix {length}, over {max_bytes}")
    return await _exactly(reader, length, f"frame of {length} bytes")


async def _exactly(reader: asyncio.StreamReader, count: int, what: str) -> bytes:
    try:
        return await reader.readexactly(count)
    except asyncio.IncompleteReadError as exc:
        raise FramingError(
            f"connection closed in the middle of a {what}: {len(exc.partial)} of {count} bytes came"
        ) from None
