"""Lean routes: a payment's requests answered without FastAPI's per-request machinery
when they are plainly well-formed.

For every request FastAPI solves the endpoint's dependencies, validates its parameters
one by one and runs a plain `def` endpoint on a worker thread, through generic code that
costs more CPU than the payment it serves. A `LeanRoute` first offers the request to its
`shortcut`, which checks what the endpoint's parameters would (a JSON body of the
endpoint's model, the credentials) and, when all is well, runs the endpoint's own code
and answers. For anything else it returns None, and the request goes, as it came, to the
route's FastAPI handler, which answers exactly as it always did: FastAPI stays the one
place that words a refused request, and the route's OpenAPI description is FastAPI's.

A shortcut must change nothing before it returns None; an error it raises once it has
decided to answer goes to the app's exception handlers, as an endpoint's would.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError

#: Looks at a request: the answer, or None to leave the request to FastAPI.
Shortcut = Callable[[Request], Awaitable[Response | None]]
ModelT = TypeVar("ModelT", bound=BaseModel)

#: The one content type a shortcut reads a body of; FastAPI reads the others.
JSON_CONTENT_TYPE = "application/json"


class LeanRoute(APIRoute):
    """An `APIRoute` whose `shortcut` sees each request first (`lean_route` makes one)."""

    shortcut: Shortcut

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        full = super().get_route_handler()
        shortcut = type(self).shortcut

        async def handler(request: Request) -> Response:
            answer = await shortcut(request)
            return answer if answer is not None else await full(request)

        return handler


def lean_route(shortcut: Shortcut) -> type[APIRoute]:
    """A route class for `add_api_route(..., route_class_override=)` trying `shortcut`."""
    return type("LeanRoute", (LeanRoute,), {"shortcut": staticmethod(shortcut)})


async def plain_body(request: Request, model: type[ModelT]) -> ModelT | None:
    """The request's JSON body as `model`, validated as FastAPI validates it (from the
    parsed JSON); None for any other body or content type. The body stays cached on
    `request` for FastAPI."""
    if request.headers.get("content-type") != JSON_CONTENT_TYPE:
        return None
    body = await request.body()
    try:
        value = json.loads(body)
    except ValueError:  # JSONDecodeError, and undecodable bytes
        return None
    if not isinstance(value, dict):
        return None
    try:
        return model.model_validate(value)
    except ValidationError:
        return None
