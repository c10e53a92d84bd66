"""``PushLane``: the push stream's way through the app, past the layers it does not need.

Every other request lasts milliseconds; a push stream lasts as long as its face check waits,
and thousands wait at once. Each ASGI layer a request passes through holds a coroutine frame
(and most a ``send`` closure) for the request's whole life: Starlette's exception middleware,
two exception wrappers, the router, the route and its request/response wrappers, our security
headers and start-up layers together held about 6 KiB per waiting browser. ``PushLane`` sits
right inside ``Observed`` (which still times, counts and logs the stream, and echoes its
request id) and hands ``GET /challenge/{token}/events`` to the endpoint itself, with the
security headers added to its response. Anything else goes down the usual stack;
an error the endpoint does not answer still reaches Starlette's server-error layer, outside.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

PREFIX, SUFFIX = "/challenge/", "/events"
METHODS = frozenset({"GET", "HEAD"})  # what the route answers; the router says 405 to the rest


def push_token(path: str) -> str | None:
    """The token of a push stream's path (what the route's ``{token}`` matches), else None."""
    if not (path.startswith(PREFIX) and path.endswith(SUFFIX)):
        return None
    token = path[len(PREFIX) : -len(SUFFIX)]
    return token if token and "/" not in token else None


class PushLane:
    def __init__(
        self,
        app: ASGIApp,
        endpoint: Callable[[Request], Awaitable[Response]],
        headers: list[tuple[bytes, bytes]],
    ) -> None:
        self.app = app
        self.endpoint = endpoint
        self.headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in METHODS:
            await self.app(scope, receive, send)
            return
        token = push_token(scope["path"])
        if token is None:
            await self.app(scope, receive, send)
            return
        # What the router would set: the endpoint (Observed names the route by it) and the
        # path parameter the endpoint reads.
        scope["endpoint"] = self.endpoint
        scope["path_params"] = {"token": token}
        response = await self.endpoint(Request(scope, receive))
        # Added to the response itself, not by a send wrapper: no closure to hold.
        response.raw_headers = [*response.raw_headers, *self.headers]
        await response(scope, receive, send)
