"""Discovery (OIDC Discovery §3), JWKS, userinfo (OIDC Core §5.3), and health probes."""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..boot.readiness import readiness
from ..boot.runtime import Runtime
from ..oidc.request_objects import SIGNED_ALGS
from ..store import StoreUnavailable
from ..web.forms import BadForm, read_form
from ..web.responses import json_error, runtime

# The stepup_ claims appear only when they apply (oidc/server.py:IdToken).
CLAIMS_SUPPORTED = (
    "sub",
    "iss",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "nonce",
    "acr",
    "amr",
    "stepup_risk",
    "stepup_ip",
    "stepup_enrollment",
    "authorization_details",
    "txn",
)


def metadata(rt: Runtime) -> dict[str, object]:
    issuer = rt.settings.issuer
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/token",
        "userinfo_endpoint": f"{issuer}/userinfo",
        "jwks_uri": f"{issuer}/jwks",
        "scopes_supported": ["openid"],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": rt.keys.algorithms(),
        "request_object_signing_alg_values_supported": SIGNED_ALGS,
        "token_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt",
        ],
        "token_endpoint_auth_signing_alg_values_supported": ["RS256", "ES256", "PS256"],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": list(CLAIMS_SUPPORTED),
        "claims_parameter_supported": True,
        "request_parameter_supported": True,
        "request_uri_parameter_supported": False,
        "acr_values_supported": list(rt.settings.acr.levels),
        "prompt_values_supported": ["none", "login", "consent"],
        "authorization_response_iss_parameter_supported": True,
        # RFC 9126 §5; authenticated as at the token endpoint (no metadata of its own).
        "pushed_authorization_request_endpoint": f"{issuer}/par",
        "require_pushed_authorization_requests": _every_client_pushes(rt),
        "claim_types_supported": ["normal"],
        # The pages' languages (ui.languages), chosen by ui_locales or Accept-Language.
        "ui_locales_supported": list(rt.templates.languages),
        "authorization_details_types_supported": list(rt.settings.authorization_details.types),
    }


def _every_client_pushes(rt: Runtime) -> bool:
    """True only when no client may use /authorize without /par (RFC 9126 §5: a server-wide
    requirement); each client's own setting is enforced either way."""
    clients = rt.settings.clients
    return bool(clients) and all(c.require_pushed_authorization_requests for c in clients)


async def openid_configuration(request: Request) -> Response:
    rt = runtime(request)
    return JSONResponse(metadata(rt), headers={"Cache-Control": "public, max-age=300"})


async def jwks(request: Request) -> Response:
    rt = runtime(request)
    return Response(
        rt.keys.jwks_json,
        media_type="application/jwk-set+json",
        headers={"Cache-Control": "public, max-age=300"},
    )


async def userinfo(request: Request) -> Response:
    rt = runtime(request)
    token = await _bearer(request, rt)
    challenge = 'Bearer error="invalid_token"'
    if token is None:
        return json_error(
            401,
            "invalid_token",
            "A Bearer access token is required.",
            **{"WWW-Authenticate": "Bearer"},
        )
    try:
        claims = await rt.store.access_token_claims(token)
    except StoreUnavailable:
        return json_error(503, "temporarily_unavailable", "The service is unavailable.")
    if claims is None:
        return json_error(
            401,
            "invalid_token",
            "The access token is invalid, expired or revoked.",
            **{"WWW-Authenticate": challenge},
        )
    return JSONResponse(json.loads(claims), headers={"Cache-Control": "no-store"})


async def _bearer(request: Request, rt: Runtime) -> str | None:
    """RFC 6750 §2.1 header, or §2.2 form body on POST."""
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer " and header[7:].strip():
        return header[7:].strip()
    if request.method == "POST":
        try:
            form = await read_form(request, rt.settings.server.max_form_bytes)
        except BadForm:
            return None
        values = form.get("access_token") or []
        return values[0] if len(values) == 1 else None
    return None


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    ready, body = await readiness(runtime(request))
    return JSONResponse(body, status_code=200 if ready else 503)
