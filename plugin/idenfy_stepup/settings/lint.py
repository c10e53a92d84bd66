"""``check-config`` warnings: settings that work but are unsafe outside a developer's machine."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from ..boot.sealed_secrets import live_problems
from ..observe.tracing import problems as tracing_problems
from ..oidc.keys import KeyLoadError, keys_from_config
from ..web.brand_check import brand_errors, brand_warnings
from .models import Settings, is_loopback_host

MIN_SECRET = 32


def unsafe_settings(settings: Settings) -> list[str]:
    warnings: list[str] = []
    issuer = urlsplit(settings.issuer)
    if issuer.scheme != "https" and not settings.issuer_is_loopback():
        warnings.append("issuer uses http on a non-loopback host: use https")
    if settings.cookies.secure is False and not settings.issuer_is_loopback():
        warnings.append("cookies.secure is false on a non-loopback issuer")
    secret = settings.cookies.secret
    if secret is not None and len(secret.get_secret_value()) < MIN_SECRET:
        warnings.append(f"cookies.secret is shorter than {MIN_SECRET} characters")
    warnings += _idenfy_warnings(settings)
    warnings += _details_warnings(settings)
    warnings += brand_warnings(settings)
    for i, client in enumerate(settings.clients):
        where = f"clients[{i}] ({client.client_id})"
        if not client.require_pkce:
            warnings.append(f"{where}: PKCE is disabled (require_pkce: false)")
        client_secret = client.client_secret
        if client_secret is not None and len(client_secret.get_secret_value()) < MIN_SECRET:
            warnings.append(f"{where}: client_secret is shorter than {MIN_SECRET} characters")
        for uri in client.redirect_uris:
            parts = urlsplit(uri)
            if parts.scheme == "http" and not _loopback(parts.hostname):
                warnings.append(f"{where}: redirect_uri {uri} uses http")
        if "login_hint" in client.subject_hints:
            warnings.append(
                f"{where}: accepts a plain login_hint, so the RP must check the id_token's sub"
            )
        if client.conformance_subject is not None:
            warnings.append(
                f"{where}: conformance_subject steps up {client.conformance_subject!r} for any "
                "request that names nobody (conformance runs only)"
            )
    return warnings


def _idenfy_warnings(settings: Settings) -> list[str]:
    idenfy = settings.idenfy
    warnings: list[str] = []
    if idenfy.mode == "simulator" and not settings.issuer_is_loopback():
        warnings.append("idenfy.mode is simulator on a non-loopback issuer: no real face check")
    key = idenfy.webhook_signing_key
    if key is not None and len(key.get_secret_value()) < MIN_SECRET:
        warnings.append(f"idenfy.webhook_signing_key is shorter than {MIN_SECRET} characters")
    if idenfy.mode == "live" and urlsplit(idenfy.api_base).scheme != "https":
        warnings.append("idenfy.api_base does not use https")
    if idenfy.mode == "live" and not settings.server.trusted_proxies:
        # The common deployment is behind a TLS proxy: without this, every user has the
        # proxy's address, and one address's failure budget is everyone's.
        warnings.append(
            "server.trusted_proxies is empty: behind a reverse proxy every user shares its "
            "address (rate limits, logs); list the proxy's addresses"
        )
    return warnings


def _details_warnings(settings: Settings) -> list[str]:
    """A display text that never names a member of its type: the person would approve a value
    they are not shown (PSD2 dynamic linking asks that they see amount and payee)."""
    warnings = []
    for name, kind in settings.authorization_details.compiled().items():
        for language, missing in kind.unshown().items():
            where = f"authorization_details.types.{name}.display"
            if isinstance(settings.authorization_details.types[name].display, dict):
                where += f".{language}"
            warnings.append(f"{where}: does not show {', '.join(missing)}")
    return warnings


def _loopback(host: str | None) -> bool:
    return is_loopback_host(host or "")


def load_errors(settings: Settings) -> list[str]:
    """Problems that would stop the service at start-up: keys and files that do not load."""
    errors: list[str] = live_problems(settings)
    errors += brand_errors(settings)
    errors += tracing_problems(settings.tracing)
    if settings.keys.signing:
        try:
            ring = keys_from_config(settings.keys)
        except KeyLoadError as exc:
            errors.append(str(exc))
        else:
            active = ring.algorithms()
            errors += [
                f"clients[{i}].id_token_signed_response_alg: {c.id_token_signed_response_alg} "
                f"has no active key in keys.signing (active: {', '.join(active)})"
                for i, c in enumerate(settings.clients)
                if c.id_token_signed_response_alg not in active
            ]
    for i, trusted in enumerate(settings.directory.trusted_issuers):
        where = f"directory.trusted_issuers[{i}]"
        try:
            data = trusted.jwks if trusted.jwks is not None else _read_json(trusted.jwks_file)
        except OSError as exc:
            errors.append(f"{where}.jwks_file: cannot read it ({exc.strerror or exc})")
            continue
        except ValueError:
            errors.append(f"{where}.jwks_file: not valid JSON")
            continue
        try:
            KeySet.import_key_set(data)  # type: ignore[arg-type]
        except (ValueError, TypeError, KeyError, AttributeError, JoseError) as exc:
            errors.append(f"{where}: keys do not load ({type(exc).__name__})")
    return errors


def _read_json(path: Path | None) -> object:
    return json.loads(Path(str(path)).read_text())
