"""Error base class with a stable, machine-readable code.

Expected operating outcomes (a decline, an insufficient balance) are answers, not
exceptions; exceptions derived from `MilletError` are for input the caller must fix.
"""

from __future__ import annotations


class MilletError(Exception):
    """An error a caller can act on: `code` is stable, `message` is for people."""

    code: str = "millet_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"
