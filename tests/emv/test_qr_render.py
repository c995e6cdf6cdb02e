"""Rendering QR codes: what is drawn is read back by a real decoder (zbar) as the same text."""

from __future__ import annotations

import io
from xml.etree import ElementTree

import pytest
from PIL import Image
from pyzbar import pyzbar

from milletpay.emv import qr, qr_render
from milletpay.emv.qr import QrError

# The EMVCo specification's example with its CRC, as published in ericsalim/exemvi
# test/mpm_test.exs (@official_sample) and dongri/emv-qrcode README.md. Its alternate
# language template is Chinese: the UTF-8 bytes must survive the picture.
EMVCO_EXAMPLE = (
    "00020101021229300012D156000000000510A93FO3230Q31280012D15600000001030812345678"
    "520441115802CN5914BEST TRANSPORT6007BEIJING64200002ZH0104最佳运输0202北京"
    "540523.7253031565502016233030412340603***0708A60086670902ME"
    "91320016A0112233449988770708123456786304A13A"
)
# The consumer-presented example, from mvallim/emv-qrcode src/test/java/com/emv/qrcode/
# decoder/cpm/ConsumerPresentedModeDecoderTest.java (testSuccessDecode).
EMVCO_CPM = (
    "hQVDUFYwMWETTwegAAAAVVVVUAhQcm9kdWN0MWETTwegAAAAZmZmUAhQcm9kdWN0MmJJWggSNFZ4kBI0WF8g"
    "DkNBUkRIT0xERVIvRU1WXy0IcnVlc2RlZW5kIZ8QBwYBCgMAAACfJghYT9OF+iNLzJ82AgABnzcEbVjvEw=="
)


def _read_back(png: bytes) -> bytes:
    (symbol,) = pyzbar.decode(Image.open(io.BytesIO(png)))
    assert symbol.type == "QRCODE"
    data: bytes = symbol.data
    return data


def test_png_of_the_emvco_example_reads_back_and_decodes_to_the_same_payload() -> None:
    png = qr_render.render_png(EMVCO_EXAMPLE)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert qr.decode_mpm(_read_back(png)) == qr.decode_mpm(EMVCO_EXAMPLE)


def test_png_of_an_encoded_payload_reads_back_byte_for_byte() -> None:
    text = qr.encode_mpm(qr.decode_mpm(EMVCO_EXAMPLE))
    assert _read_back(qr_render.render_png(text)).decode() == text


def test_png_of_a_consumer_presented_code_reads_back() -> None:
    scanned = _read_back(qr_render.render_png(EMVCO_CPM))
    assert qr.decode_cpm(scanned) == qr.decode_cpm(EMVCO_CPM)


def test_png_of_a_numeric_payment_code_reads_back() -> None:
    code = qr.encode_numeric_code(123456789)
    assert qr.decode_numeric_code(_read_back(qr_render.render_png(code)).decode()) == 123456789


def test_svg_is_an_svg_document() -> None:
    svg = qr_render.render_svg(EMVCO_EXAMPLE)
    root = ElementTree.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"


def test_empty_text_is_refused() -> None:
    with pytest.raises(QrError, match="non-empty text"):
        qr_render.render_png("")


def test_text_over_the_render_limit_is_refused() -> None:
    with pytest.raises(QrError, match="1025 characters to draw, over 1024"):
        qr_render.render_svg("0" * (qr_render.RENDER_CHARS_MAX + 1))
