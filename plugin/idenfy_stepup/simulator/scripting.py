"""Unauthenticated ``/_simulator/…`` endpoints that let tests and the iframe drive the simulator."""

from __future__ import annotations

from typing import Any, get_args

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..settings import CheckStatusType
from .core import Simulator, read_object
from .outage import MODES
from .state import Outcome, Session, WebhookRecord

STATUSES = ("SUCCESS", "FAILED", "EXPIRED", "CANCELED")  # docs/idenfy-api.md §2.2
MAX_FAIL_REASON = 255  # §2.1: failReason is a free string of at most 255 characters
MAX_FIELD = 255  # riskTags entries and ipAddress
MAX_RISK_TAGS = 16
SCAN_REF_TYPES: tuple[str, ...] = get_args(CheckStatusType)


def error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status)


def _unknown_token() -> JSONResponse:
    return error(404, "not_found", "No session has this token.")


def _delivery(record: WebhookRecord) -> JSONResponse:
    return JSONResponse(
        {"delivered": record.delivered, "attempts": record.attempts, "id": record.id}
    )


def parse_outcome(data: dict[str, Any]) -> Outcome | str:
    """The requested outcome, or why the request is bad."""
    status, reason = data.get("status"), data.get("failReason")
    if status not in STATUSES:
        return f"status must be one of {', '.join(STATUSES)}."
    if reason is not None and status != "FAILED":
        return "failReason is only allowed with status FAILED."
    # Any reason string is allowed (unknown ones included) so integrators can test tolerance.
    if reason is not None and not (isinstance(reason, str) and 0 < len(reason) <= MAX_FAIL_REASON):
        return f"failReason must be a non-empty string of at most {MAX_FAIL_REASON} characters."
    if not isinstance(data.get("force", False), bool):
        return "force must be a boolean."
    tags, ip = data.get("riskTags"), data.get("ipAddress")
    # Any tag string is allowed (unknown ones included), like failReason.
    if tags is not None and not (
        isinstance(tags, list)
        and len(tags) <= MAX_RISK_TAGS
        and all(isinstance(t, str) and 0 < len(t) <= MAX_FIELD for t in tags)
    ):
        return f"riskTags must be null or a list of at most {MAX_RISK_TAGS} non-empty strings."
    if ip is not None and not (isinstance(ip, str) and 0 < len(ip) <= MAX_FIELD):
        return f"ipAddress must be null or a non-empty string of at most {MAX_FIELD} characters."
    return Outcome(status, reason, None if tags is None else tuple(tags), ip)


class ScriptingApi:
    """The simulator's own controls; never part of iDenfy's API, never authenticated."""

    def __init__(self, sim: Simulator) -> None:
        self._sim = sim

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/_simulator/sessions/{token}", self.get_session, methods=["GET"]),
            Route("/_simulator/sessions/{token}/outcome", self.outcome, methods=["POST"]),
            Route("/_simulator/webhooks/{token}/resend", self.resend, methods=["POST"]),
            Route("/_simulator/scan-refs/{scan_ref}", self.put_scan_ref, methods=["PUT"]),
            Route("/_simulator/scan-refs/{scan_ref}", self.delete_scan_ref, methods=["DELETE"]),
            Route("/_simulator/outage", self.get_outage, methods=["GET"]),
            Route("/_simulator/outage", self.put_outage, methods=["PUT"]),
            Route("/_simulator/outage", self.end_outage, methods=["DELETE"]),
        ]

    def _session(self, request: Request) -> Session | None:
        return self._sim.registry.get(request.path_params["token"])

    async def get_session(self, request: Request) -> Response:
        session = self._session(request)
        if session is None:
            return _unknown_token()
        return JSONResponse(session.simulator_view(self._sim.base_url))

    async def outcome(self, request: Request) -> Response:
        session = self._session(request)
        if session is None:
            return _unknown_token()
        data = await read_object(request)
        if data is None:
            return error(400, "invalid_json", "The body must be a JSON object.")
        outcome = parse_outcome(data)
        if isinstance(outcome, str):
            return error(400, "invalid_request", outcome)
        record = await self._sim.finish(session, outcome, force=data.get("force") is True)
        if record is None:
            return error(409, "already_finished", "This session already has an outcome.")
        return _delivery(record)

    async def resend(self, request: Request) -> Response:
        session = self._session(request)
        if session is None:
            return _unknown_token()
        record = await self._sim.resend(session)
        if record is None:
            return error(409, "no_webhook", "No webhook was sent for this session yet.")
        return _delivery(record)

    async def put_scan_ref(self, request: Request) -> Response:
        data = await read_object(request)
        if data is None:
            return error(400, "invalid_json", "The body must be a JSON object.")
        if data.get("type") not in SCAN_REF_TYPES:
            choices = ", ".join(SCAN_REF_TYPES)
            return error(400, "invalid_request", f"type must be one of {choices}.")
        scan_ref = request.path_params["scan_ref"]
        self._sim.registry.scan_refs[scan_ref] = data["type"]
        return JSONResponse({"scanRef": scan_ref, "type": data["type"]})

    async def delete_scan_ref(self, request: Request) -> Response:
        # A deleted KYC verification: check-status then answers 404 (§1.1).
        if self._sim.registry.scan_refs.pop(request.path_params["scan_ref"], None) is None:
            return error(404, "not_found", "No such scanRef.")
        return Response(status_code=204)

    async def get_outage(self, request: Request) -> Response:
        return JSONResponse(self._sim.outage.view())

    async def put_outage(self, request: Request) -> Response:
        data = await read_object(request)
        if data is None:
            return error(400, "invalid_json", "The body must be a JSON object.")
        if data.get("mode") not in MODES:
            return error(400, "invalid_request", f"mode must be one of {', '.join(MODES)}.")
        self._sim.outage.set(data["mode"])
        return JSONResponse(self._sim.outage.view())

    async def end_outage(self, request: Request) -> Response:
        # Hanging requests are released and answered normally.
        self._sim.outage.set(None)
        return JSONResponse(self._sim.outage.view())
