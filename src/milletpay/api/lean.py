"""Lean routes: a payment's requests answered before FastAPI's routing and per-request
machinery when they are plainly well-formed.

For every request FastAPI matches the path against the routes one by one, solves the
endpoint's dependencies, validates its parameters one by one and runs a plain `def`
endpoint on a worker thread, through generic code that costs more CPU than the payment
it serves. A `LeanRoute` is an ordinary route of its router that also names a
`shortcut`. `LeanPaths`, plain ASGI middleware, matches each request against the lean
routes only and offers a match to its `shortcut`, which checks what the endpoint's
parameters would (a JSON body of the endpoint's model, the credentials) and, when all
is well, runs the endpoint's own code and answers. For anything else it returns None,
and the request goes on, as it came (its body replayed), to FastAPI, which answers
exactly as it always did: FastAPI stays the one place that words a refused request,
and the route's OpenAPI description is FastAPI's. Without `LeanPaths`, FastAPI answers
every request of a lean route itself.

A shortcut must change nothing before it returns None; an error it raises once it has
decided to answer is answered by the app's exception handler for it, as an endpoint's
would be.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Looks at a request: the answer, or None to leave the request to FastAPI.
Shortcut = Callable[[Request], Awaitable[Response | None]]
ModelT = TypeVar("ModelT", bound=BaseModel)

#: The one content type a shortcut reads a body of; FastAPI reads the others.
JSON_CONTENT_TYPE = "application/json"


class LeanRoute(APIRoute):
    """An `APIRoute` whose `shortcut` `LeanPaths` offers its requests first (`lean_route`
    makes the class)."""

    shortcut: Shortcut


def lean_route(shortcut: Shortcut) -> type[APIRoute]:
    """A route class for `add_api_route(..., route_class_override=)` with `shortcut`."""
    return type("LeanRoute", (LeanRoute,), {"shortcut": staticmethod(shortcut)})


class LeanPaths:
    """ASGI middleware answering the requests of the lean routes of `routers` that their
    shortcuts take (see the module). The routers are included in the app without a
    prefix of their own: a route's path is the one it matches."""

    def __init__(self, app: ASGIApp, routers: Iterable[APIRouter]) -> None:
        self._app = app
        #: (methods, route) of each lean route
        self._routes = [
            (frozenset(route.methods or ()), route)
            for router in routers
            for route in router.routes
            if isinstance(route, LeanRoute)
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self._match(scope) if scope["type"] == "http" else None
        if route is None:
            await self._app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            answer = await type(route).shortcut(request)
        except Exception as error:
            handler = _handler(scope["app"].exception_handlers, error)
            if handler is None:
                raise
            answer = await handler(request, error)
        if answer is None:
            await self._app(scope, _replayed(request, receive), send)
        else:
            await answer(scope, receive, send)

    def _match(self, scope: Scope) -> LeanRoute | None:
        path, method = scope["path"], scope["method"]
        for methods, route in self._routes:
            if method in methods:
                found = route.path_regex.match(path)
                if found is not None:
                    scope["path_params"] = {
                        name: route.param_convertors[name].convert(value)
                        for name, value in found.groupdict().items()
                    }
                    return route
        return None


def _handler(handlers: dict[Any, Any], error: Exception) -> Any:
    """The app's exception handler for `error`: its class's, or its nearest base's."""
    for kind in type(error).__mro__:
        if kind in handlers:
            return handlers[kind]
    return None


def _replayed(request: Request, receive: Receive) -> Receive:
    """`receive` for the app after a shortcut declined: the body the shortcut read (if
    it read it), then the connection's own messages (a disconnect)."""
    body: bytes | None = getattr(request, "_body", None)
    if body is None:
        return receive
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay


async def plain_body(request: Request, model: type[ModelT]) -> ModelT | None:
    """The request's JSON body as `model`, validated as FastAPI validates it (from the
    parsed JSON); None for any other body or content type."""
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
