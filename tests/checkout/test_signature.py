"""The signature scheme, from the receiver's side: `verify_signature` accepts what the
worker signs and nothing else. No database involved."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from milletpay.checkout.webhooks import (
    SIGNATURE_HEADER_CHARS_MAX,
    SIGNATURE_TOLERANCE_S,
    SignatureHeaderMalformed,
    SignatureInvalid,
    SignatureTimestampOutsideTolerance,
    signature_header,
    verify_signature,
)

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
BODY = b'{"id":"evt_1","type":"payment_intent.succeeded"}'
T = 1_700_000_000
#: HMAC-SHA256 of "1700000000." + BODY under SECRET, computed outside Python with
#: `printf '%s' '1700000000.<body>' | openssl dgst -sha256 -hmac '<secret>'`.
VECTOR = "a978e6f8a8e1e47133e3dcb67d84ba9459d28441bf42a5f89bcaa99008fef8c1"


def test_signature_matches_the_hand_computed_vector() -> None:
    assert signature_header(SECRET, T, BODY) == f"t={T},v1={VECTOR}"


def test_a_signed_body_verifies_and_gives_its_timestamp() -> None:
    assert verify_signature(f"t={T},v1={VECTOR}", BODY, SECRET, now_s=T + 10) == T


def test_a_tampered_body_is_rejected() -> None:
    tampered = BODY.replace(b"succeeded", b"failed")
    with pytest.raises(SignatureInvalid) as raised:
        verify_signature(f"t={T},v1={VECTOR}", tampered, SECRET, now_s=T)
    assert raised.value.code == "signature_invalid"


def test_a_wrong_secret_is_rejected() -> None:
    with pytest.raises(SignatureInvalid):
        verify_signature(f"t={T},v1={VECTOR}", BODY, SECRET + "x", now_s=T)


def test_a_changed_timestamp_is_rejected() -> None:
    with pytest.raises(SignatureInvalid):
        verify_signature(f"t={T + 1},v1={VECTOR}", BODY, SECRET, now_s=T)


@pytest.mark.parametrize("offset_s", [SIGNATURE_TOLERANCE_S + 1, -(SIGNATURE_TOLERANCE_S + 1)])
def test_a_timestamp_outside_the_tolerance_is_rejected(offset_s: int) -> None:
    header = signature_header(SECRET, T, BODY)
    with pytest.raises(SignatureTimestampOutsideTolerance) as raised:
        verify_signature(header, BODY, SECRET, now_s=T + offset_s)
    assert raised.value.code == "signature_timestamp_outside_tolerance"


@pytest.mark.parametrize("offset_s", [SIGNATURE_TOLERANCE_S, -SIGNATURE_TOLERANCE_S])
def test_a_timestamp_at_the_tolerance_edge_is_accepted(offset_s: int) -> None:
    header = signature_header(SECRET, T, BODY)
    assert verify_signature(header, BODY, SECRET, now_s=T + offset_s) == T


def test_a_smaller_tolerance_is_the_receivers_choice() -> None:
    header = signature_header(SECRET, T, BODY)
    with pytest.raises(SignatureTimestampOutsideTolerance):
        verify_signature(header, BODY, SECRET, now_s=T + 61, tolerance_s=60)


def test_one_matching_signature_among_several_and_unknown_schemes_is_enough() -> None:
    other = hmac.new(b"whsec_old", f"{T}.".encode() + BODY, hashlib.sha256).hexdigest()
    header = f"t={T}, v0=abc, v1={other}, v1={VECTOR}"
    assert verify_signature(header, BODY, SECRET, now_s=T) == T


@pytest.mark.parametrize(
    "header",
    [
        "",
        "garbage",
        f"v1={VECTOR}",  # no timestamp
        f"t={T}",  # no signature
        f"t={T},v0={VECTOR}",  # no v1 signature
        f"t=abc,v1={VECTOR}",
        f"t=-1,v1={VECTOR}",
        f"t={T},t={T},v1={VECTOR}",
        f"t=1{'0' * 12},v1={VECTOR}",
        f"t={T},v1={VECTOR[:-1]}",
        f"t={T},v1={VECTOR.upper()}",
        f"t={T},v1={'g' * 64}",
        f"t={T}," + ",".join([f"v1={VECTOR}"] * 9),
        f"t={T},v1={VECTOR}," + "x" * SIGNATURE_HEADER_CHARS_MAX,
    ],
)
def test_a_malformed_header_is_rejected(header: str) -> None:
    with pytest.raises(SignatureHeaderMalformed) as raised:
        verify_signature(header, BODY, SECRET, now_s=T)
    assert raised.value.code == "signature_header_malformed"


@given(
    body=st.binary(max_size=512),
    secret=st.text(st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=64),
    t=st.integers(0, 10**11),
)
def test_what_is_signed_verifies_and_any_changed_byte_does_not(
    body: bytes, secret: str, t: int
) -> None:
    header = signature_header(secret, t, body)
    assert verify_signature(header, body, secret, now_s=t) == t
    for index in range(len(body)):
        changed = body[:index] + bytes([body[index] ^ 0x01]) + body[index + 1 :]
        with pytest.raises(SignatureInvalid):
            verify_signature(header, changed, secret, now_s=t)
    with pytest.raises(SignatureInvalid):
        verify_signature(header, body + b" ", secret, now_s=t)
