"""``POST /token``: redeem a code for an id_token and access token (OIDC Core §3.1.3).

The code is consumed atomically *before* authlib checks the client and PKCE, and bound to the
access token about to be issued: a second redemption — concurrent or later — fails with
``invalid_grant`` and revokes that access token (RFC 6749 §4.1.2, invariant 3).
"""

from __future__ import annotations

import base64
import binascii
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..oidc.requests import AuthlibRequest
from ..runtime import Runtime
from ..stepup import CodeGrant
from ..store import StoreUnavailable, new_secret_for
from .common import NO_STORE, BadForm, json_error, log, read_form, runtime


async def token(request: Request) -> Response:
    rt = runtime(request)
    try:
        form = await read_form(request, rt.settings.server.max_form_bytes)
    except BadForm as exc:
        return json_error(exc.status_code, "invalid_request", exc.description)
    if not _basic_readable(request):
        return json_error(401, "invalid_client", "The Basic credentials are not valid UTF-8.",
                          **{"WWW-Authenticate": 'Basic error="invalid_client"'})  # fmt: skip
    code = _single(form, "code")
    # Named after the code's challenge, where redeeming the code records its SHA-256.
    access_token = new_secret_for((code or "").rpartition(".")[0] or "none")
    try:
        grant = await _redeem(rt, code, access_token, form)
        status, body, headers = _authlib_response(rt, request, form, grant, access_token)
        if status == 200:
            replay = await _assertion_replayed(rt)
            if replay is not None:
                return replay
    except StoreUnavailable:
        return json_error(503, "temporarily_unavailable", "The service is unavailable.")
    return JSONResponse(body, status_code=status, headers={**dict(headers), **NO_STORE})


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
    rt: Runtime, code: str | None, access_token: str, form: dict[str, list[str]]
) -> CodeGrant | None:
    if code is None or _single(form, "grant_type") != "authorization_code" or len(code) > 512:
        return None
    ttl = rt.settings.keys.access_token_lifetime
    kind, grant = await rt.store.redeem_code(code, access_token, ttl)
    if kind == "reused":
        log.warning("authorization code replayed; its tokens are revoked",
                    extra={"event": "token.code_reuse"})  # fmt: skip
    return grant


def _authlib_response(
    rt: Runtime, request: Request, form: dict[str, list[str]], grant: CodeGrant | None, at: str
) -> tuple[int, Any, list[tuple[str, str]]]:
    oauth = AuthlibRequest("POST", f"{rt.settings.issuer}/token", form, request.headers, form=True)
    oauth.stepup_code = grant
    oauth.stepup_access_token = at
    rt.server.pending_jti = None  # set by PrivateKeyJWT during this synchronous call only
    status, body, headers = rt.server.create_token_response(oauth)
    return int(status), body, list(headers)


async def _assertion_replayed(rt: Runtime) -> Response | None:
    """RFC 7523 §3: a client assertion's ``jti`` may be used once."""
    pending = rt.server.pending_jti
    if pending is None:
        return None
    jti, exp = pending
    ttl = max(exp - int(time.time()), 0) + 120
    if await rt.store.first_use(f"jti:{jti}", ttl):
        return None
    return json_error(401, "invalid_client", "The client assertion was already used.")
