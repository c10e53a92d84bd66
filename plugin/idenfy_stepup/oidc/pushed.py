"""Pushed authorization requests (RFC 9126): the ``request_uri`` values /par hands out.

A request_uri is a bearer reference: whoever holds it (the client, then the user's browser)
can start the pushed request, once, within ``par.request_uri_lifetime``. It carries 256 random
bits and nothing else; Redis keeps the pushed request under its SHA-256, never the value.
"""

from __future__ import annotations

import secrets

# RFC 9126 §2.2: the URN namespace registered for request_uri values from a PAR endpoint.
REQUEST_URI_PREFIX = "urn:ietf:params:oauth:request_uri:"
# Longer than anything we issue (34 + 43 characters): not ours, not looked up.
MAX_REQUEST_URI_CHARS = 128


def new_request_uri() -> str:
    return REQUEST_URI_PREFIX + secrets.token_urlsafe(32)


def is_pushed_reference(value: str) -> bool:
    """A request_uri in our PAR namespace (any other, e.g. https://…, is request by reference,
    which is not supported)."""
    return value.startswith(REQUEST_URI_PREFIX)


def may_be_ours(value: str) -> bool:
    """Worth a Redis lookup: in the namespace and not longer than what /par issues."""
    return is_pushed_reference(value) and len(value) <= MAX_REQUEST_URI_CHARS
