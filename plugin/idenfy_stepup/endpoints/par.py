"""``POST /par``: pushed authorization requests (RFC 9126).

The client authenticates as at ``/token`` (:mod:`.client_auth`: the same methods, the same
``jti`` replay check, the same failure throttle) and pushes the parameters of an authorization
request. They are validated as ``/authorize`` would (RFC 9126 §2.1): the client_id, when sent,
is the authenticated client; authlib checks redirect_uri, response_type, the PKCE method and a
request object's signature, ``aud`` and ``exp``; then the local checks of
``stepup.checks.AUTHORIZE_CHECKS`` (``local``: neither Redis nor the vendor). No vendor call,
no challenge, no subject limit: those belong to the browser's visit to ``/authorize``, which
takes the request with ``client_id`` and the returned ``request_uri``, once. A request object's
``jti`` is recorded there, not here, so that ``/authorize`` still refuses its second use.

Every answer is JSON (RFC 9126 §2.2, §2.3): 201 ``{"request_uri", "expires_in"}``; 400 with
the row's ``error`` (an ``errors:`` override applies); 401 ``invalid_client``; 405 for another
method; 413 for a body over ``server.max_form_bytes``; 429 over a failure limit; 503 when
Redis is down.
"""

from __future__ import annotations

from authlib.oauth2.rfc6749 import OAuth2Error
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..boot.runtime import Runtime
from ..oidc.models import Client
from ..oidc.pushed import new_request_uri
from ..oidc.requests import AuthlibRequest
from ..stepup.checks import AUTHORIZE_CHECKS, Pending
from ..stepup.limits import ip_identity
from ..stepup.outcomes import Outcome
from ..stepup.policy import Refusal
from ..store import StoreUnavailable
from ..web.forms import BadForm, read_form
from ..web.responses import NO_STORE, json_error, runtime
from .authorize import NAMED_BY_RP, SINGLE_VALUED
from .client_auth import authenticated_client

LOCAL_CHECKS = tuple(check for check in AUTHORIZE_CHECKS if check.local)


async def par(request: Request) -> Response:
    rt = runtime(request)
    if request.method != "POST":
        return json_error(
            405, "invalid_request", "Pushed authorization requests are POSTed.", Allow="POST"
        )
    try:
        form = await read_form(request, rt.settings.server.max_form_bytes)
    except BadForm as exc:
        return json_error(exc.status_code, "invalid_request", exc.description)
    oauth = AuthlibRequest("POST", f"{rt.settings.issuer}/par", form, request.headers, form=True)
    try:
        client = await authenticated_client(rt, request, oauth, form)
        if isinstance(client, Response):
            return client
        pushed = _pushed_parameters(rt, client, form)
        if isinstance(pushed, Response):
            return pushed
        refused = await _validate(rt, request, client, pushed)
        if refused is not None:
            return refused
        request_uri = new_request_uri()
        lifetime = rt.settings.par.request_uri_lifetime
        await rt.store.push_request(request_uri, client.client_id, pushed, lifetime)
    except StoreUnavailable:
        return json_error(503, "temporarily_unavailable", "The service is unavailable.")
    body = {"request_uri": request_uri, "expires_in": lifetime}
    return JSONResponse(body, status_code=201, headers=NO_STORE)


def _pushed_parameters(
    rt: Runtime, client: Client, form: dict[str, list[str]]
) -> dict[str, str] | Response:
    """The authorization parameters to keep: those ``/authorize`` reads, each once, with the
    authenticated client's id. The client's credentials and unknown parameters are not kept."""
    repeated = sorted(k for k in SINGLE_VALUED if len(form.get(k, ())) > 1)
    if repeated:
        return _invalid(rt, f"The parameter {repeated[0]} is included more than once.")
    if "request_uri" in form:
        # RFC 9126 §2.1: a pushed request cannot refer to another one.
        return _invalid(rt, "request_uri cannot be pushed.")
    sent = form.get("client_id")
    if sent and sent[0] != client.client_id:
        # RFC 9126 §2.1: client_id, when present, is the authenticated client.
        return _invalid(rt, "client_id is not the authenticated client.")
    kept = {k: form[k][0] for k in SINGLE_VALUED if form.get(k)}
    kept["client_id"] = client.client_id
    return kept


async def _validate(
    rt: Runtime, request: Request, client: Client, pushed: dict[str, str]
) -> Response | None:
    """The pushed request checked as ``/authorize`` would, without Redis or the vendor."""
    params = {k: [v] for k, v in pushed.items()}
    oauth = AuthlibRequest("POST", f"{rt.settings.issuer}/authorize", params, {}, form=True)
    try:
        rt.server.get_consent_grant(oauth, end_user=NAMED_BY_RP)
    except OAuth2Error as exc:
        if exc.error == "unsupported_response_type" and not pushed.get("response_type"):
            return _invalid(rt, "The response_type parameter is missing.")  # as at /authorize
        return _refused(rt.outcomes.protocol(exc.error, exc.description or None))
    except ValueError:
        # authlib refuses to echo characters RFC 6749 §5.2 does not allow (see /authorize).
        return _invalid(rt, "The request has a parameter with characters that are not allowed.")
    pending = Pending(rt, oauth, client.settings, ip_identity(request, rt), pushed=True)
    for check in LOCAL_CHECKS:
        try:
            row = await check.step(pending)
        except Refusal as exc:
            return _refused(rt.outcomes.resolve(exc.outcome, exc.description))
        if row is not None:
            return _refused(rt.outcomes[row])
    return None


def _refused(outcome: Outcome) -> Response:
    """RFC 9126 §2.3: the authorization endpoint's error code, in a JSON body."""
    body = {
        "error": outcome.error,
        "error_description": outcome.description,
        "stepup_error": outcome.stepup_error,
    }
    return JSONResponse(body, status_code=400, headers=NO_STORE)


def _invalid(rt: Runtime, description: str) -> Response:
    return _refused(rt.outcomes.resolve("INVALID_REQUEST", description))
