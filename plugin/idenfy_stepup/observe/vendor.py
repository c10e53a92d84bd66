"""``MeteredFetch``: the vendor edge measured where requests leave the process.

It wraps whatever :class:`~..idenfy.transport.VendorFetch` the app uses, so every request to
iDenfy (whichever client method, retry or breaker sent it) is counted by call and status and
timed, and gets a client span. ``call`` is a fixed name per API path, never the path itself
(it holds a scanRef or a session token).
"""

from __future__ import annotations

import re
import time
from urllib.parse import urlsplit

from ..idenfy.transport import FetchTimeout, VendorFetch, VendorRequest, VendorResponse
from . import tracing
from .metrics import VENDOR_REQUEST_SECONDS, VENDOR_REQUESTS

# Each API call's path (docs/idenfy-api.md §1), matched at the end of the URL's path so a base
# URL with a path prefix still matches.
CALLS = (
    ("check_status", re.compile(r"/identification/facial-auth/[^/]+/check-status/?$")),
    ("create_authentication", re.compile(r"/partner/authentication-info/?$")),
    ("get_session", re.compile(r"/api/v2/facial-authentication-sessions/[^/]+/?$")),
)
OTHER = "other"


def call_name(url: str) -> str:
    path = urlsplit(url).path
    return next((name for name, pattern in CALLS if pattern.search(path)), OTHER)


class MeteredFetch:
    def __init__(self, fetch: VendorFetch) -> None:
        self._fetch = fetch

    async def __call__(self, request: VendorRequest) -> VendorResponse:
        call = call_name(request.url)
        status = "error"
        start = time.perf_counter()
        attributes = {"http.request.method": request.method, "stepup.vendor_call": call}
        with tracing.span(f"idenfy {call}", kind="client", attributes=attributes) as current:
            try:
                response = await self._fetch(request)
                status = str(response.status)
                return response
            except FetchTimeout:
                status = "timeout"
                raise
            finally:
                VENDOR_REQUESTS.labels(call, status).inc()
                VENDOR_REQUEST_SECONDS.labels(call).observe(time.perf_counter() - start)
                if current is not None:
                    current.set_attribute("stepup.vendor_status", status)
