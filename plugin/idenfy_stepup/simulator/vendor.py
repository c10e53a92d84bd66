"""The simulated iDenfy partner API: check-status, authentication-info and sessions (§1)."""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .core import Simulator, read_object
from .state import Session

Endpoint = Callable[[Request], Awaitable[Response]]

METHODS = ("FACE_MATCHING", "ACTIVE_LIVENESS")
DEFAULT_METHOD = "FACE_MATCHING"
DEFAULT_LIFETIME = 1800  # §1.2 / §4: default 30 min, max 30 days, in seconds
MAX_LIFETIME = 2_592_000
SESSIONS = "/api/v2/facial-authentication-sessions/"
# Where the partner API's routes live (a scripted outage covers exactly these).
VENDOR_PREFIXES = ("/identification/", "/partner/", "/api/")
BAD_METHOD = "method must be FACE_MATCHING or ACTIVE_LIVENESS."


def vendor_error(status: int, identifier: str, message: str) -> JSONResponse:
    """The partner API's error shape (docs/idenfy-api.md §1.5)."""
    return JSONResponse({"identifier": identifier, "message": message}, status_code=status)


def _not_found(what: str) -> JSONResponse:
    return vendor_error(404, "NOT_FOUND", f"{what} was not found.")


def credentials_match(header: str, api_key: str, api_secret: str) -> bool:
    """Check an ``Authorization: Basic`` header, comparing both halves in constant time."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        decoded = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    user, colon, password = decoded.partition(b":")
    user_ok = hmac.compare_digest(user, api_key.encode("utf-8"))
    password_ok = hmac.compare_digest(password, api_secret.encode("utf-8"))
    return bool(colon) and user_ok and password_ok


def _session_problem(data: dict[str, Any], known_type: str) -> str | None:
    """Why an authentication-info request is a ``BAD_VALUE`` (§1.2), or None."""
    if known_type == "IDENTIFICATION":
        return "This scanRef needs a full identification first, not face authentication."
    if data.get("type") is not None and data["type"] != known_type:
        return f"type must be {known_type}, as check-status answers for this scanRef."
    if data.get("method") is not None and data["method"] not in METHODS:
        return BAD_METHOD
    lifetime = data.get("lifetime")
    bad_int = not isinstance(lifetime, int) or isinstance(lifetime, bool)
    if lifetime is not None and (bad_int or not 1 <= lifetime <= MAX_LIFETIME):
        return f"lifetime must be a whole number of seconds from 1 to {MAX_LIFETIME}."
    if data.get("locale") is not None and not isinstance(data["locale"], str):
        return "locale must be a string."
    if not isinstance(data.get("generateDigitString", False), bool):
        return "generateDigitString must be a boolean."
    return None


def _created(session: Session, digits: bool) -> dict[str, Any]:
    # Official samples read only `token` (§1.2); the rest echoes the request for convenience.
    answer: dict[str, Any] = {
        "token": session.token,
        "scanRef": session.scan_ref,
        "type": session.type,
        "method": session.method,
        "lifetime": session.lifetime,
        "locale": session.locale,
    }
    if digits:  # for the vendor's mobile app only; its format is undocumented [gap]
        answer["digitString"] = "".join(secrets.choice("0123456789") for _ in range(6))
    return answer


class VendorApi:
    """Routes of ``https://ivs.idenfy.com`` that the provider calls, all behind Basic auth."""

    def __init__(self, sim: Simulator) -> None:
        self._sim = sim

    def routes(self) -> list[BaseRoute]:
        check = "/identification/facial-auth/{scan_ref}/check-status/"
        return [
            Route(check, self._guard(self.check_status), methods=["GET"]),
            Route("/partner/authentication-info", self._guard(self.create), methods=["POST"]),
            Route(SESSIONS, self._guard(self.list_sessions), methods=["GET"]),
            Route(SESSIONS + "{token}/", self._guard(self.get_session), methods=["GET"]),
        ]

    def _guard(self, endpoint: Endpoint) -> Endpoint:
        settings = self._sim.settings
        secret = settings.api_secret.get_secret_value()

        async def guarded(request: Request) -> Response:
            header = request.headers.get("authorization", "")
            if not credentials_match(header, settings.api_key, secret):
                # §1.5: the 401 body carries only a message, no identifier.
                body = {"message": "Invalid authorization credentials"}
                headers = {"WWW-Authenticate": 'Basic realm="iDenfy simulator"'}
                return JSONResponse(body, status_code=401, headers=headers)
            return await endpoint(request)

        return guarded

    async def check_status(self, request: Request) -> Response:
        known = self._sim.registry.scan_refs.get(request.path_params["scan_ref"])
        if known is None:
            return _not_found("scanRef")
        # An old official sample omits `method` (§1.1), so absent is accepted.
        if request.query_params.get("method", DEFAULT_METHOD) not in METHODS:
            return vendor_error(400, "BAD_VALUE", BAD_METHOD)
        return JSONResponse({"type": known})

    async def create(self, request: Request) -> Response:
        data = await read_object(request)
        if data is None:
            return vendor_error(400, "JSON_ERROR", "The body must be a JSON object.")
        scan_ref = data.get("scanRef")
        if not isinstance(scan_ref, str) or not scan_ref:
            return vendor_error(400, "MISSING_VALUE", "scanRef is required.")
        known = self._sim.registry.scan_refs.get(scan_ref)
        if known is None:
            return _not_found("scanRef")
        problem = _session_problem(data, known)
        if problem is not None:
            return vendor_error(400, "BAD_VALUE", problem)
        # An old official sample sends only scanRef (§1.2): type and method then default.
        session = self._sim.registry.create(
            scan_ref,
            data.get("type") or known,
            data.get("method") or DEFAULT_METHOD,
            data.get("lifetime") or DEFAULT_LIFETIME,
            data.get("locale"),
        )
        return JSONResponse(_created(session, data.get("generateDigitString") is True))

    async def list_sessions(self, request: Request) -> Response:
        base = self._sim.base_url
        return JSONResponse([s.vendor_view(base) for s in self._sim.registry.all()])

    async def get_session(self, request: Request) -> Response:
        session = self._sim.registry.get(request.path_params["token"])
        if session is None:
            return _not_found("Session")
        return JSONResponse(session.vendor_view(self._sim.base_url))
