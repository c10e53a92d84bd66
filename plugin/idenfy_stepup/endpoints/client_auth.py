"""Client authentication for the back-channel endpoints, ``/token`` and ``/par`` (RFC 9126 §2).

Both authenticate a client the same way (client_secret_basic, client_secret_post or
private_key_jwt, as the client registered; a client assertion's ``jti`` used once) and share
one throttle of failed authentications (:mod:`.token_limits`): its counters are the same for
both endpoints, so alternating between them gives a guesser no second budget.
"""

from __future__ import annotations

import base64
import binascii
import math
import time
from dataclasses import dataclass

from authlib.oauth2 import OAuth2Error
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..audit import events as audit
from ..audit.facts import limit_exceeded
from ..boot.runtime import Runtime
from ..observe.metrics import rate_limited
from ..oidc.models import Client
from ..oidc.requests import AuthlibRequest
from ..stepup.limits import ip_identity
from ..web.responses import NO_STORE, json_error
from .token_limits import TokenThrottle, claimed_clients


async def authenticated_client(
    rt: Runtime, request: Request, oauth: AuthlibRequest, form: dict[str, list[str]]
) -> Client | Response:
    """The authenticated client, or the answer to give instead: 429 over a failure limit
    (checked first, counting nothing), 401 for a failed authentication (which counts).
    Raises ``StoreUnavailable`` when Redis cannot answer."""
    throttle = TokenThrottle(rt, ip_identity(request, rt), claimed_clients(rt, request, form))
    endpoint, claimed = request.url.path, throttle.clients[0] if throttle.clients else None
    wait, limit = await throttle.refusal()
    if wait > 0:
        limit_exceeded(limit, endpoint, throttle.address, client_id=claimed, retry_after=wait)
        rate_limited("token_failures")
        return _throttled(wait)
    client = await _authenticate(rt, request, oauth)
    if isinstance(client, _Failed):
        audit.emit(
            audit.CLIENT_AUTH_FAILED,
            None,
            endpoint=endpoint,
            client_id=claimed,
            reason=client.reason,
            **audit.address_fields(throttle.address),
        )
        await throttle.failed()
        return client.response
    return client


@dataclass(frozen=True, slots=True)
class _Failed:
    """A failed authentication: its answer, and why (the audit event's reason)."""

    response: Response
    reason: str


async def _authenticate(rt: Runtime, request: Request, oauth: AuthlibRequest) -> Client | _Failed:
    """The authenticated client, or the error response of a failed authentication."""
    if not _basic_readable(request):
        refused = json_error(
            401,
            "invalid_client",
            "The Basic credentials are not valid UTF-8.",
            **{"WWW-Authenticate": 'Basic error="invalid_client"'},
        )
        return _Failed(refused, "credentials_not_utf8")
    try:
        client, pending_jti = rt.server.authenticate_token_client(oauth)
    except OAuth2Error as error:
        status, body, headers = rt.server.handle_error_response(oauth, error)
        answer = JSONResponse(body, status_code=int(status), headers={**dict(headers), **NO_STORE})
        return _Failed(answer, "credentials_refused")
    if pending_jti is not None:
        # RFC 7523 §3: a client assertion's ``jti`` may be used once, at either endpoint.
        jti, exp = pending_jti
        ttl = max(exp - int(time.time()), 0) + 120
        if not await rt.store.first_use(f"jti:{jti}", ttl):
            audit.emit(
                audit.REPLAY_DETECTED,
                None,
                kind="client_assertion",
                endpoint=request.url.path,
                client_id=client.client_id,
                subject=None,
                challenge_id=None,
                **audit.address_fields(ip_identity(request, rt)),
            )
            refused = json_error(401, "invalid_client", "The client assertion was already used.")
            return _Failed(refused, "assertion_replayed")
    return client


def _throttled(wait: float) -> Response:
    """429 with Retry-After. RFC 6749 §5.2 has no code for it; ``temporarily_unavailable``
    (the one /token already answers when the store is down) says "try again later" without
    telling a rightful client its credentials are wrong, as ``invalid_client`` would."""
    seconds = str(max(1, math.ceil(wait)))
    return json_error(
        429,
        "temporarily_unavailable",
        f"Too many failed client authentications. Try again in {seconds} s.",
        **{"Retry-After": seconds},
    )


def _basic_readable(request: Request) -> bool:
    """False for Basic credentials that are not UTF-8: authlib decodes them unguarded (a 500)."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return True
    try:
        base64.b64decode(value.strip()).decode("utf-8")
    except binascii.Error:
        return True  # authlib treats undecodable base64 as "no credentials" itself
    except UnicodeDecodeError:
        return False
    return True
