"""What a request says about itself: its X-Request-ID and W3C traceparent, read strictly.

A header that does not have the exact shape is not used and not echoed: a fresh request id
replaces it, and a malformed traceparent starts a new trace. Both end up in the access log,
so only safe characters of a bounded length may pass.
"""

from __future__ import annotations

import re
import secrets

# Safe characters only (no spaces, quotes or controls), at most 128 of them: a UUID, a ULID,
# a proxy's hex or base64url id all fit.
_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
# W3C Trace Context level 1, version 00: version-traceid-parentid-flags, lower-case hex.
_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")


def request_id(header: str | None) -> str:
    """The caller's X-Request-ID when well-formed, else a new one (32 hex digits)."""
    if header is not None and _REQUEST_ID.fullmatch(header):
        return header
    return secrets.token_hex(16)


def trace_parent(header: str | None) -> str | None:
    """``header`` when it is a valid traceparent (trace and parent id not all zeros)."""
    if header is None:
        return None
    found = _TRACEPARENT.fullmatch(header)
    if found is None or set(found[1]) == {"0"} or set(found[2]) == {"0"}:
        return None
    return header


def trace_id_of(traceparent: str) -> str:
    return traceparent[3:35]


def new_trace_id() -> str:
    return secrets.token_hex(16)
