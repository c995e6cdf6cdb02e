"""Every error the API returns is one JSON shape: {"error": {"code", "message", "field"}}.

`code` is stable and machine-readable; `message` is for people; `field` names the
request field at fault when there is one (validation errors always have one).
Unexpected failures answer 500 `internal_error` without leaking details. `ERROR_RESPONSES`
documents the shape in the OpenAPI document for every operation.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

from milletpay.core.errors import MilletError

log = logging.getLogger("milletpay.api")

#: HTTP status -> the code an error without a code of its own gets.
STATUS_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "request_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "too_many_requests",
    500: "internal_error",
    503: "unavailable",
}


#: Domain error code -> HTTP status; any other domain error is a 400.
STATUS_BY_ERROR_CODE: dict[str, int] = {
    "user_not_found": 404,
    "device_not_found": 404,
    "phone_taken": 409,
    "class_iii_already_held": 409,
    "pin_already_set": 409,
    "device_already_bound": 409,
    "device_limit_reached": 409,
    "otp_rate_limited": 429,
    "challenge_limit_reached": 429,
    # Naming another user's phone or binding challenge, or a bank account in another
    # holder's name, is refused like any other foreign id: 403 or 404, never a 400.
    "device_bound_to_another_user": 403,
    "challenge_unknown": 404,
    "bank_account_link_declined": 403,
    "cursor_not_found": 404,
    "linked_bank_account_not_found": 404,
    # Cards: a token id that is not the user's is 404 like one that does not exist; a
    # lifecycle change the rules refuse (resuming the bank's suspension) is a conflict.
    "token_unknown": 404,
    "token_transition_refused": 409,
    "token_busy": 409,
    "card_envelope_invalid": 422,
    "token_request_invalid": 422,
    "token_numbers_exhausted": 503,
}


class ErrorDetail(BaseModel):
    """One error; a decline (402) adds the numbers of the limit that declined it."""

    model_config = ConfigDict(extra="allow")

    code: str
    message: str
    field: str | None


class ErrorBody(BaseModel):
    error: ErrorDetail


#: The error answers every operation may give, for the OpenAPI document: any 4xx, and
#: 500 `internal_error`. They replace FastAPI's own 422 shape, which the API never sends.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": ErrorBody, "description": "The request was refused; `code` says why."},
    "5XX": {"model": ErrorBody, "description": "The server could not answer."},
}


class ApiError(Exception):
    """An error answer: raise it from a handler."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field


def error_response(
    status: int, code: str, message: str, field: str | None = None, headers: Any = None
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "field": field}}
    return JSONResponse(body, status_code=status, headers=headers)


def _field_of(location: Sequence[Any]) -> str:
    # ("body", "amount") -> "amount"; ("query", "limit") -> "limit"; nested -> "a.b.0"
    parts = [str(p) for p in location]
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:]
    return ".".join(parts) or "body"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, error: ApiError) -> JSONResponse:
        return error_response(error.status, error.code, error.message, error.field)

    @app.exception_handler(MilletError)
    async def _millet_error(_request: Request, error: MilletError) -> JSONResponse:
        return error_response(STATUS_BY_ERROR_CODE.get(error.code, 400), error.code, error.message)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {"loc": (), "msg": "invalid request"}
        field = _field_of(first.get("loc", ()))
        return error_response(422, "invalid_request", f"{field}: {first.get('msg')}", field)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = STATUS_CODES.get(error.status_code, "error")
        message = error.detail if isinstance(error.detail, str) else code.replace("_", " ")
        return error_response(error.status_code, code, message, headers=error.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "the server could not answer this request")
