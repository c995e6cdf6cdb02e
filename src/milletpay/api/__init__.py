"""The HTTP API (FastAPI): versioned paths under /v1, JSON errors, idempotency keys.

It speaks to the domain packages; no domain package imports it.
"""

from milletpay.api.app import create_app

__all__ = ["create_app"]
