"""The card sealed from the phone to the token service: round trip, and one refusal for
anything malformed, tampered with, too large or sealed to another key."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from milletpay.cards import (
    ENVELOPE_CHARS_MAX,
    CardEnvelopeInvalid,
    Cvn2Invalid,
    Expiry,
    Pan,
    PanInvalid,
    open_card_envelope,
    seal_card_for_tsp,
    tsp_public_key,
)
from milletpay.core.keyring import KeyRing

from .pans import LUHN_INVALID, UNIONPAY_19, VISA

KEYRING = KeyRing.generate()
EXPIRY = Expiry(2031, 9)


def _sealed(pan: str = UNIONPAY_19, cvn2: str = "123") -> str:
    return seal_card_for_tsp(tsp_public_key(KEYRING), pan, EXPIRY, cvn2)


def test_the_tsp_opens_what_the_phone_sealed() -> None:
    card = open_card_envelope(KEYRING, _sealed())
    assert (card.pan, card.expiry, card.cvn2) == (Pan(UNIONPAY_19), EXPIRY, "123")
    assert UNIONPAY_19 not in repr(card) and "123" not in repr(card)


def test_the_envelope_is_the_documented_json() -> None:
    document = json.loads(_sealed())
    assert set(document) == {"v", "epk", "nonce", "ct"} and document["v"] == 1
    epk = base64.b64decode(document["epk"])
    assert len(epk) == 65 and epk[0] == 4
    assert len(base64.b64decode(document["nonce"])) == 12
    assert UNIONPAY_19 not in _sealed()
    assert len(_sealed()) < ENVELOPE_CHARS_MAX


def test_the_tsp_key_is_the_same_for_the_same_key_ring_and_not_for_another() -> None:
    again = KeyRing.from_json(KEYRING_JSON, source="test")
    assert tsp_public_key(again) == tsp_public_key(KEYRING_FROM_JSON)
    assert tsp_public_key(KeyRing.generate()) != tsp_public_key(KEYRING)


KEYRING_JSON = json.dumps({"1": base64.b64encode(bytes(range(32))).decode()})
KEYRING_FROM_JSON = KeyRing.from_json(KEYRING_JSON, source="test")


def test_an_envelope_sealed_to_another_tsp_does_not_open() -> None:
    other = seal_card_for_tsp(tsp_public_key(KeyRing.generate()), VISA, EXPIRY, "123")
    with pytest.raises(CardEnvelopeInvalid, match="does not open"):
        open_card_envelope(KEYRING, other)


def _edited(field: str, value: object) -> str:
    document = json.loads(_sealed())
    document[field] = value
    return json.dumps(document)


def _flipped(field: str, index: int) -> str:
    raw = bytearray(base64.b64decode(json.loads(_sealed())[field]))
    raw[index % len(raw)] ^= 0x01
    return _edited(field, base64.b64encode(bytes(raw)).decode())


@pytest.mark.parametrize(
    "envelope",
    [
        "",
        "not json",
        "[]",
        json.dumps({"v": 1}),
        _edited("v", 2),
        _edited("v", True),
        _edited("epk", "***"),
        _edited("epk", 5),
        _edited("nonce", base64.b64encode(b"short").decode()),
        _edited("extra", 1),
        _flipped("ct", 0),
        _flipped("ct", -1),
        _flipped("nonce", 3),
        _flipped("epk", 20),
        "x" * (ENVELOPE_CHARS_MAX + 1),
    ],
)
def test_a_malformed_or_tampered_envelope_is_one_error(envelope: str) -> None:
    with pytest.raises(CardEnvelopeInvalid) as refused:
        open_card_envelope(KEYRING, envelope)
    assert refused.value.code == "card_envelope_invalid"


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=0), st.integers(min_value=0, max_value=7))
def test_any_flipped_bit_of_the_ciphertext_is_refused(index: int, bit: int) -> None:
    document = json.loads(_sealed())
    raw = bytearray(base64.b64decode(document["ct"]))
    raw[index % len(raw)] ^= 1 << bit
    document["ct"] = base64.b64encode(bytes(raw)).decode()
    with pytest.raises(CardEnvelopeInvalid):
        open_card_envelope(KEYRING, json.dumps(document))


def test_a_bad_cvn2_inside_is_refused() -> None:
    with pytest.raises(Cvn2Invalid):
        open_card_envelope(KEYRING, _sealed(cvn2="12"))


def test_the_phone_cannot_seal_a_bad_number() -> None:
    with pytest.raises(PanInvalid):
        _sealed(pan=LUHN_INVALID)
