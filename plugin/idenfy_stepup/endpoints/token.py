"""``POST /token``: redeem a code for an id_token and access token (OIDC Core §3.1.3).

The client is authenticated first (client_secret_basic, client_secret_post, private_key_jwt
with its ``jti`` replay check), on its own: a request that fails it reads and changes nothing
of the code, so a stolen code posted without the client's credentials is not burnt. Failed
authentications are throttled per address and per client (:mod:`.token_limits`). Only then,
and only for the client the code was issued to, is the code consumed atomically and bound to
the access token about to be issued; authlib then checks redirect_uri and PKCE. A second
redemption by that client — concurrent or later — fails with ``invalid_grant`` and revokes
that access token (RFC 6749 §4.1.2).
"""

from __future__ import annotations

import base64
import binascii
import math
import time

from authlib.oauth2 import OAuth2Error
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..boot.runtime import Runtime
from ..oidc.models import Client
from ..oidc.requests import AuthlibRequest
from ..stepup.limits import ip_identity
from ..stepup.records import CodeGrant
from ..store import Redemption, StoreUnavailable, new_secret_for
from ..web.forms import BadForm, read_form
from ..web.responses import NO_STORE, json_error, log, runtime
from .token_limits import TokenThrottle, claimed_clients


async def token(request: Request) -> Response:
    rt = runtime(request)
    try:
        form = await read_form(request, rt.settings.server.max_form_bytes)
    except BadForm as exc:
        return json_error(exc.status_code, "invalid_request", exc.description)
    oauth = AuthlibRequest("POST", f"{rt.settings.issuer}/token", form, request.headers, form=True)
    if not rt.server.is_code_grant(oauth):
        # unsupported_grant_type or invalid_request: no client is authenticated, no code read.
        return _authlib_response(rt, oauth)
    throttle = TokenThrottle(rt, ip_identity(request, rt), claimed_clients(rt, request, form))
    try:
        wait = await throttle.wait()
        if wait > 0:
            return _throttled(wait)
        client = await _authenticate(rt, request, oauth)
        if isinstance(client, Response):
            await throttle.failed()
            return client
        code = _single(form, "code")
        # Named after the code's challenge, where redeeming the code records its SHA-256.
        access_token = new_secret_for((code or "").rpartition(".")[0] or "none")
        oauth.stepup_client = client
        oauth.stepup_code = await _redeem(rt, client, code, access_token)
        oauth.stepup_access_token = access_token
    except StoreUnavailable:
        return json_error(503, "temporarily_unavailable", "The service is unavailable.")
    return _authlib_response(rt, oauth)


async def _authenticate(rt: Runtime, request: Request, oauth: AuthlibRequest) -> Client | Response:
    """The authenticated client, or the error response of a failed authentication."""
    if not _basic_readable(request):
        return json_error(
            401,
            "invalid_client",
            "The Basic credentials are not valid UTF-8.",
            **{"WWW-Authenticate": 'Basic error="invalid_client"'},
        )
    try:
        client, pending_jti = rt.server.authenticate_token_client(oauth)
    except OAuth2Error as error:
        status, body, headers = rt.server.handle_error_response(oauth, error)
        return JSONResponse(body, status_code=int(status), headers={**dict(headers), **NO_STORE})
    if pending_jti is not None:
        # RFC 7523 §3: a client assertion's ``jti`` may be used once.
        jti, exp = pending_jti
        ttl = max(exp - int(time.time()), 0) + 120
        if not await rt.store.first_use(f"jti:{jti}", ttl):
            return json_error(401, "invalid_client", "The client assertion was already used.")
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


def _single(form: dict[str, list[str]], name: str) -> str | None:
    values = form.get(name) or []
    return values[0] if len(values) == 1 and values[0] else None


async def _redeem(
    rt: Runtime, client: Client, code: str | None, access_token: str
) -> CodeGrant | None:
    """Consume the code for the authenticated ``client``; another client's code is left alone
    (authlib then answers invalid_grant, and its own client can still redeem it)."""
    if code is None or len(code) > 512:
        return None
    ttl = rt.settings.keys.access_token_lifetime
    kind, grant = await rt.store.redeem_code(code, access_token, ttl, client.client_id)
    if kind == Redemption.REUSED:
        log.warning(
            "authorization code replayed; its tokens are revoked",
            extra={"event": "token.code_reuse"},
        )
    return grant


def _authlib_response(rt: Runtime, oauth: AuthlibRequest) -> Response:
    status, body, headers = rt.server.create_token_response(oauth)
    return JSONResponse(body, status_code=int(status), headers={**dict(headers), **NO_STORE})
