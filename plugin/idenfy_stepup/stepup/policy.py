"""Step-up decisions at /authorize: which level (acr) and which person (subject).

Each refusal is a :class:`Refusal` naming its row of the outcome table (``stepup.outcomes``);
the authorize endpoint resolves it there (so an ``errors:`` override applies) and turns it into a
redirect to the (already validated) redirect_uri.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from ..oidc.keys import KeyRing
from ..settings import ClientSettings, Settings, TrustedIssuer
from ..web.jsontext import has_lone_surrogate, json_depth


class Refusal(Exception):
    """The request is understood but cannot be served; reported to the RP by redirect.

    ``outcome`` is a row name of the outcome table; ``description``, when given, is a more
    specific public description than the row's (an operator's ``errors:`` one still wins).
    """

    def __init__(self, outcome: str, description: str | None = None) -> None:
        super().__init__(description or outcome)
        self.outcome = outcome
        self.description = description


def invalid(description: str, outcome: str = "INVALID_REQUEST") -> Refusal:
    return Refusal(outcome, description)


@dataclass(frozen=True, slots=True)
class Subject:
    """Who must pass the face check, and whether a signature vouches for it.

    ``verified``: named by a signed request object or a verified ``id_token_hint``. A plain
    ``login_hint`` is only *claimed*: anyone can send it, so it may never count against, or
    lock out, the person it names.
    """

    name: str
    verified: bool


@dataclass(frozen=True, slots=True)
class Level:
    acr: str
    method: str


# A claims request is at most four levels deep ({"id_token": {"acr": {"values": [...]}}});
# anything much deeper is refused before it reaches json.dumps (RecursionError, a 500).
MAX_CLAIMS_DEPTH = 8


def parse_claims(raw: str | None) -> dict[str, Any]:
    """The ``claims`` parameter (OIDC Core §5.5), a JSON object."""
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        raise invalid("The claims parameter is not valid JSON.") from None
    if not isinstance(value, dict):
        raise invalid("The claims parameter must be a JSON object.")
    if json_depth(value) > MAX_CLAIMS_DEPTH:
        raise invalid("The claims parameter is nested too deeply.")
    if has_lone_surrogate(value):
        # It is stored with the challenge: text UTF-8 cannot encode would fail there.
        raise invalid("The claims parameter has text that is not valid Unicode.")
    return value


def choose_level(
    settings: Settings, client: ClientSettings, acr_values: str | None, claims: dict[str, Any]
) -> Level:
    """The first requested acr we can satisfy (OIDC Core §3.1.2.1, §5.5.1.1)."""
    levels = settings.acr.levels
    essential = _essential_acr(claims)
    if essential is not None:
        for acr in essential:
            if acr in levels:
                return Level(acr, levels[acr].method)
        raise _acr_unsupported()
    requested = (acr_values or "").split()
    for acr in requested:
        if acr in levels:
            return Level(acr, levels[acr].method)
    if requested and client.strict_acr_values:
        raise _acr_unsupported()
    default = settings.acr.default
    return Level(default, levels[default].method)


def _essential_acr(claims: dict[str, Any]) -> list[str] | None:
    spec = claims.get("id_token", {}) if isinstance(claims.get("id_token"), dict) else {}
    acr = spec.get("acr")
    if not isinstance(acr, dict) or not acr.get("essential"):
        return None
    values = acr.get("values") or ([acr["value"]] if "value" in acr else [])
    if not isinstance(values, list) or not values:
        return None  # essential but unconstrained: any level we have satisfies it
    return [str(v) for v in values]


def _acr_unsupported() -> Refusal:
    return Refusal("ACR_UNSUPPORTED", "None of the requested authentication levels is available.")


def resolve_subject(
    settings: Settings,
    client: ClientSettings,
    params: dict[str, str],
    keys: KeyRing,
    request_object: dict[str, Any] | None = None,
) -> Subject:
    """Who must pass the face check, from the hints this client is allowed to use.

    ``request_object`` holds the verified claims of a signed request object, when one was sent;
    ``params`` (the query merged with those claims) never names the subject on its behalf.
    """
    found: list[tuple[str, bool]] = []  # (subject, verified)
    hints = client.subject_hints
    if "request_object" in hints and request_object is not None:
        subject = _from_request_object(request_object)
        if subject:
            found.append((subject, True))
    if "id_token_hint" in hints and params.get("id_token_hint"):
        hinted = _from_id_token_hint(settings, client, params["id_token_hint"], keys)
        found.append((hinted, True))
    if "login_hint" in hints and params.get("login_hint") and request_object is None:
        found.append((params["login_hint"], False))
    if not found and client.conformance_subject is not None:
        # A conformance run's requests name nobody (simulator mode only, checked at load time).
        # Only claimed: it may never count against, or lock out, the person it names.
        found.append((client.conformance_subject, False))
    if not found:
        raise Refusal("SUBJECT_REQUIRED")
    if len({name for name, _ in found}) > 1:
        raise Refusal("SUBJECT_CONFLICT")
    subject = found[0][0]
    if not subject or len(subject) > 255 or has_lone_surrogate(subject):
        # A lone surrogate (from a JSON escape in a signed hint) cannot become a Redis key.
        raise invalid("The subject hint is empty, too long or not valid text.", "SUBJECT_REQUIRED")
    # Verified as soon as one signed hint names it (the others agree, or we refused above).
    return Subject(subject, any(verified for _, verified in found))


def _from_request_object(obj: dict[str, Any]) -> str | None:
    """``claims.id_token.sub.value`` (OIDC Core §5.5.1), else ``login_hint``, of the object."""
    raw = obj.get("claims")
    claims = raw if isinstance(raw, dict) else parse_claims(raw if isinstance(raw, str) else None)
    spec = claims.get("id_token", {}) if isinstance(claims.get("id_token"), dict) else {}
    sub = spec.get("sub")
    if isinstance(sub, dict) and isinstance(sub.get("value"), str):
        return str(sub["value"])
    hint = obj.get("login_hint")
    return hint if isinstance(hint, str) and hint else None


def _from_id_token_hint(
    settings: Settings, client: ClientSettings, token: str, keys: KeyRing
) -> str:
    """OIDC Core §3.1.2.1: an id_token we, or a trusted upstream, issued to this client.

    A hint is usually the id_token of an earlier session and may have expired, but only by a
    bounded tolerance: an unbounded one would let any id_token ever leaked (a log, a browser
    history) open face checks, counted against its subject, for ever.
    """
    claims = keys.verify(token)
    if claims is not None and claims.get("iss") == settings.issuer:
        _check_hint(claims, (client.client_id,), settings.keys.id_token_hint_tolerance)
        return _hint_subject(claims, "sub")
    for trusted in settings.directory.trusted_issuers:
        try:
            # Asymmetric algorithms only: an HS256 token "signed" with the public key, or an
            # unsigned one, is not an upstream's signature.
            decoded = jwt.decode(token, _trusted_keys(trusted), algorithms=list(UPSTREAM_ALGS))
        except (JoseError, ValueError):
            continue
        if decoded.claims.get("iss") != trusted.issuer:
            continue
        typ = str(decoded.header.get("typ", "")).lower()
        if typ in NOT_ID_TOKENS:
            raise _bad_hint("The id_token_hint is not an id_token.")
        audiences = trusted.audience or (client.client_id,)
        _check_hint(dict(decoded.claims), audiences, trusted.expired_tolerance)
        return _hint_subject(decoded.claims, trusted.subject_claim)
    raise _bad_hint("The id_token_hint could not be verified.")


# Algorithms an upstream may sign id_tokens with (never none, never a shared secret).
UPSTREAM_ALGS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)
# JWT types (``typ``, lower-cased) that are signed by the same keys but are not id_tokens:
# RFC 9068 access tokens and OIDC back-channel logout tokens.
NOT_ID_TOKENS = frozenset({"at+jwt", "application/at+jwt", "logout+jwt", "application/logout+jwt"})
HINT_LEEWAY = 30  # seconds of clock skew allowed on iat and nbf (and beyond the tolerance)


def _check_hint(claims: dict[str, Any], audiences: tuple[str, ...], tolerance: int) -> None:
    """aud, exp (within ``tolerance`` seconds after it), nbf and iat of a verified hint."""
    aud = claims.get("aud")
    auds = aud if isinstance(aud, list) else [aud]
    if not any(isinstance(a, str) and a in audiences for a in auds):
        raise _bad_hint("The id_token_hint was not issued to this client.")
    now = time.time()
    exp = claims.get("exp")
    if not _numeric(exp):
        raise _bad_hint("The id_token_hint has no valid exp.")
    if exp + tolerance + HINT_LEEWAY <= now:
        raise _bad_hint("The id_token_hint expired too long ago.")
    for name in ("nbf", "iat"):
        value = claims.get(name)
        if value is not None and (not _numeric(value) or value > now + HINT_LEEWAY):
            raise _bad_hint(f"The id_token_hint has an invalid {name}.")


def _numeric(value: object) -> TypeGuard[int | float]:
    """A JSON number usable as a NumericDate (bool is an int to Python; NaN never compares)."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def _hint_subject(claims: Mapping[str, Any], name: str) -> str:
    value = claims.get(name)
    if not isinstance(value, str):
        raise _bad_hint("The id_token_hint names no subject.")
    return value


def _bad_hint(description: str) -> Refusal:
    return invalid(description, "INVALID_ID_TOKEN_HINT")


def _trusted_keys(trusted: TrustedIssuer) -> KeySet:
    if trusted.jwks is not None:
        data: Any = trusted.jwks
    else:
        assert trusted.jwks_file is not None
        data = json.loads(trusted.jwks_file.read_text())
    return KeySet.import_key_set(data)
