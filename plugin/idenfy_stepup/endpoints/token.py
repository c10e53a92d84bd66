"""``POST /token``: redeem a code for an id_token and access token (OIDC Core §3.1.3).

The client is authenticated first (client_secret_basic, client_secret_post, private_key_jwt
with its ``jti`` replay check), on its own: a request that fails it reads and changes nothing
of the code, so a stolen code posted without the client's credentials is not burnt. Failed
authentications are throttled per address and per client (:mod:`.token_limits`); /par
authenticates the same way (:mod:`.client_auth`). Only then, and only for the client the code
was issued to, is the code consumed atomically and bound to the access token about to be
issued; authlib then checks redirect_uri and PKCE. A second
redemption by that client — concurrent or later — fails with ``invalid_grant`` and revokes
that access token (RFC 6749 §4.1.2).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..audit import events as audit
from ..audit.facts import code_digest
from ..boot.runtime import Runtime
from ..oidc.models import Client
from ..oidc.requests import AuthlibRequest
from ..stepup.limits import ip_identity
from ..stepup.records import CodeGrant
from ..store import Redemption, StoreUnavailable, new_secret_for
from ..web.forms import BadForm, read_form
from ..web.responses import NO_STORE, json_error, log, runtime
from .client_auth import authenticated_client


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
    try:
        client = await authenticated_client(rt, request, oauth, form)
        if isinstance(client, Response):
            return client
        code = _single(form, "code")
        # Named after the code's challenge, where redeeming the code records its SHA-256.
        access_token = new_secret_for((code or "").rpartition(".")[0] or "none")
        oauth.stepup_client = client
        oauth.stepup_code = await _redeem(rt, request, client, code, access_token)
        oauth.stepup_access_token = access_token
    except StoreUnavailable:
        return json_error(503, "temporarily_unavailable", "The service is unavailable.")
    response = _authlib_response(rt, oauth)
    grant = oauth.stepup_code
    if response.status_code == 200 and grant is not None and code is not None:
        audit.emit(
            audit.TOKEN_ISSUED,
            grant.txn,
            **audit.who(grant),
            challenge_id=audit.challenge_id(code.rpartition(".")[0]),
            code_digest=code_digest(code),
            auth_time=grant.auth_time,
        )
    return response


def _single(form: dict[str, list[str]], name: str) -> str | None:
    values = form.get(name) or []
    return values[0] if len(values) == 1 and values[0] else None


async def _redeem(
    rt: Runtime, request: Request, client: Client, code: str | None, access_token: str
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
        await _audit_replay(rt, request, client, code)
    return grant


async def _audit_replay(rt: Runtime, request: Request, client: Client, code: str) -> None:
    """A replayed code: its client (authenticated: the script checked it is the code's) and
    its subject, read from the challenge's request."""
    if not audit.enabled():
        return
    token = code.rpartition(".")[0]
    try:
        stored = await rt.store.challenge_request(token)
    except StoreUnavailable:
        stored = None  # the replay is still reported, without its subject
    audit.emit(
        audit.REPLAY_DETECTED,
        stored.txn if stored is not None else None,
        kind="code",
        endpoint="/token",
        client_id=client.client_id,
        subject=stored.subject if stored is not None else None,
        challenge_id=audit.challenge_id(token),
        **audit.address_fields(ip_identity(request, rt)),
    )


def _authlib_response(rt: Runtime, oauth: AuthlibRequest) -> Response:
    status, body, headers = rt.server.create_token_response(oauth)
    return JSONResponse(body, status_code=int(status), headers={**dict(headers), **NO_STORE})
