"""BER-TLV as EMV uses it (EMV 4.3 Book 3, Annex B): decode bytes into `Tlv` values and back.

It owns the byte layout only: what a tag means is `tags.py`'s. It must never crash on
garbage: any malformed input raises `TlvError`, which names the offset and what was wrong.
Only canonical encodings are accepted (definite lengths, shortest form), so that
`encode(decode(data)) == data` for every input `decode` accepts.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from milletpay.core.errors import MilletError

TAG_BYTES_MAX = 3  # EMV tags are one or two bytes; three leaves room for proprietary tags
LENGTH_BYTES_MAX = 2  # forms 81 and 82: values up to 65,535 bytes
DEPTH_MAX = 8  # constructed objects nested inside each other
DATA_BYTES_MAX = 65_535  # one `decode` call's input, and one `encode` call's output
TAGS_KEPT = 1_024  # checked tags remembered (see `_tag_bytes`)

_CONSTRUCTED = 0x20
_TAG_NUMBER_MASK = 0x1F  # first tag byte: 11111 means "more tag bytes follow"
_TAG_MORE = 0x80  # subsequent tag bytes: b8 set means "another byte follows"
_LENGTH_LONG_FORM = 0x80


class TlvError(MilletError):
    """Malformed BER-TLV; `offset` is where in the input the problem was found (None for
    an object built in code rather than read from bytes)."""

    code = "tlv_invalid"

    def __init__(self, offset: int | None, what: str) -> None:
        super().__init__(what if offset is None else f"at offset {offset}: {what}")
        self.offset = offset


@dataclass(frozen=True, slots=True)
class Tlv:
    """One data object: `tag` in upper-case hex ("9F26"); a primitive object's value is its
    bytes, a constructed object's value is the tuple of objects inside it."""

    tag: str
    value: bytes | tuple[Tlv, ...]

    def __post_init__(self) -> None:
        raw = _tag_bytes(self.tag)
        if is_constructed(raw) != isinstance(self.value, tuple):
            kind = "constructed" if is_constructed(raw) else "primitive"
            raise TlvError(None, f"tag {self.tag} is {kind}, its value has the wrong shape")

    @property
    def constructed(self) -> bool:
        return isinstance(self.value, tuple)


def is_constructed(tag: bytes) -> bool:
    """Bit 6 of a tag's first byte marks a constructed object (Book 3, Annex B1)."""
    return bool(tag[0] & _CONSTRUCTED)


def decode(data: bytes) -> tuple[Tlv, ...]:
    """The data objects in `data`, in order, constructed ones decoded recursively."""
    if len(data) > DATA_BYTES_MAX:
        raise TlvError(0, f"input is {len(data)} bytes, over {DATA_BYTES_MAX}")
    return _decode(data, 0, len(data), 0)


def encode(items: Tlv | Iterable[Tlv]) -> bytes:
    """The canonical bytes of one object or a sequence of them (shortest length form)."""
    sequence = (items,) if isinstance(items, Tlv) else tuple(items)
    out = b"".join(_encode(item, 0) for item in sequence)
    if len(out) > DATA_BYTES_MAX:
        raise TlvError(None, f"encoding is {len(out)} bytes, over {DATA_BYTES_MAX}")
    return out


def walk(items: Iterable[Tlv]) -> Iterator[Tlv]:
    """Every object, depth first, constructed ones before their contents."""
    for item in items:
        yield item
        if isinstance(item.value, tuple):
            yield from walk(item.value)


def primitives(items: Iterable[Tlv]) -> dict[str, bytes]:
    """Tag → value of every primitive object at any depth; a tag seen twice is refused,
    since which of the two a caller meant cannot be known."""
    found: dict[str, bytes] = {}
    for item in walk(items):
        if isinstance(item.value, bytes):
            if item.tag in found:
                raise TlvError(None, f"tag {item.tag} occurs more than once")
            found[item.tag] = item.value
    return found


def _decode(data: bytes, start: int, end: int, depth: int) -> tuple[Tlv, ...]:
    if depth > DEPTH_MAX:
        raise TlvError(start, f"objects nested deeper than {DEPTH_MAX}")
    items: list[Tlv] = []
    offset = start
    while offset < end:
        tag, offset = _read_tag(data, offset, end)
        length, offset = _read_length(data, offset, end)
        if length > end - offset:
            raise TlvError(
                offset, f"tag {tag.hex().upper()} needs {length} bytes, {end - offset} left"
            )
        value_end = offset + length
        value: bytes | tuple[Tlv, ...]
        if is_constructed(tag):
            value = _decode(data, offset, value_end, depth + 1)
        else:
            value = data[offset:value_end]
        items.append(Tlv(tag.hex().upper(), value))
        offset = value_end
    return tuple(items)


def _read_tag(data: bytes, offset: int, end: int) -> tuple[bytes, int]:
    first = data[offset]
    if first == 0x00:
        # EMV lets a card pad with 00 between objects; refusing it keeps decoding canonical.
        raise TlvError(offset, "tag byte 00 (padding) is not accepted")
    position = offset + 1
    if first & _TAG_NUMBER_MASK == _TAG_NUMBER_MASK:
        while True:
            if position >= end:
                raise TlvError(position, "tag is cut short")
            if position - offset >= TAG_BYTES_MAX:
                raise TlvError(offset, f"tag is longer than {TAG_BYTES_MAX} bytes")
            more = data[position] & _TAG_MORE
            position += 1
            if not more:
                break
    return data[offset:position], position


def _read_length(data: bytes, offset: int, end: int) -> tuple[int, int]:
    if offset >= end:
        raise TlvError(offset, "length is missing")
    first = data[offset]
    if not first & _LENGTH_LONG_FORM:
        return first, offset + 1
    count = first & 0x7F
    if count == 0:
        raise TlvError(offset, "indefinite length (80) is not allowed")
    if count > LENGTH_BYTES_MAX:
        raise TlvError(offset, f"length of {count} bytes, over {LENGTH_BYTES_MAX}")
    if offset + 1 + count > end:
        raise TlvError(offset, "length is cut short")
    length = int.from_bytes(data[offset + 1 : offset + 1 + count], "big")
    if len(_length_bytes(length)) != 1 + count:
        raise TlvError(offset, f"length {length} is not in its shortest form")
    return length, offset + 1 + count


def _encode(item: Tlv, depth: int) -> bytes:
    if depth > DEPTH_MAX:
        raise TlvError(None, f"objects nested deeper than {DEPTH_MAX}")
    if isinstance(item.value, tuple):
        body = b"".join(_encode(child, depth + 1) for child in item.value)
    else:
        body = item.value
    return _tag_bytes(item.tag) + _length_bytes(len(body)) + body


def _length_bytes(length: int) -> bytes:
    if length < _LENGTH_LONG_FORM:
        return bytes([length])
    if length <= 0xFF:
        return b"\x81" + bytes([length])
    if length <= 0xFFFF:
        return b"\x82" + length.to_bytes(2, "big")
    raise TlvError(None, f"a value of {length} bytes is over {DATA_BYTES_MAX}")


@functools.lru_cache(maxsize=TAGS_KEPT)
def _tag_bytes(tag: str) -> bytes:
    """The bytes of a hex tag, refused unless `_read_tag` would read exactly them. Kept
    for the last `TAGS_KEPT` tags: every object made or read checks its tag, and a
    kernel or a switch meets the same few dozen again and again."""
    try:
        raw = bytes.fromhex(tag)
    except ValueError:
        raise TlvError(None, f"tag {tag!r} is not hex") from None
    if tag != raw.hex().upper() or not raw:
        raise TlvError(None, f"tag {tag!r} must be upper-case hex, whole bytes")
    try:
        parsed, position = _read_tag(raw, 0, len(raw))
    except TlvError as exc:
        raise TlvError(None, f"tag {tag}: {exc.message}") from None
    if position != len(raw):
        raise TlvError(None, f"tag {tag} has bytes after its last byte")
    return parsed
