"""Drawing a QR code's text as an image (ISO/IEC 18004, through segno): PNG and SVG.

It owns the picture only: the text comes from `qr.encode_mpm` / `qr.encode_cpm` (or a
numeric payment code) and is drawn as given, UTF-8 in byte mode, with error correction
level M (15% of the symbol may be damaged or covered). It never reads or checks a payload.
"""

from __future__ import annotations

import io

import segno

from milletpay.emv.qr import QrError

RENDER_CHARS_MAX = 1024  # well above MPM's 512 characters and CPM's base64 of 512 bytes
SCALE_PX = 8  # pixels per module: a phone screen's code scans from arm's length
BORDER_MODULES = 4  # the quiet zone ISO/IEC 18004 asks for
_ERROR_CORRECTION = "m"


def render_png(text: str, *, scale: int = SCALE_PX) -> bytes:
    """The code as a PNG image."""
    out = io.BytesIO()
    _symbol(text).save(out, kind="png", scale=scale, border=BORDER_MODULES)
    return out.getvalue()


def render_svg(text: str, *, scale: int = SCALE_PX) -> str:
    """The code as an SVG document."""
    out = io.BytesIO()
    _symbol(text).save(out, kind="svg", scale=scale, border=BORDER_MODULES, xmldecl=False)
    return out.getvalue().decode("utf-8")


def _symbol(text: str) -> segno.QRCode:
    if not isinstance(text, str) or not text:
        raise QrError(None, "a code to draw is non-empty text")
    if len(text) > RENDER_CHARS_MAX:
        raise QrError(None, f"{len(text)} characters to draw, over {RENDER_CHARS_MAX}")
    try:
        return segno.make_qr(text, error=_ERROR_CORRECTION, boost_error=False, encoding="utf-8")
    except (segno.DataOverflowError, ValueError) as exc:
        raise QrError(None, f"cannot be drawn: {exc}") from None
