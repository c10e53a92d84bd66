"""The validated step-up request: what /authorize accepted and every later step relies on."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

Self = TypeVar("Self", bound="_JsonRecord")


class _JsonRecord:
    """Compact JSON in Redis; anything that does not fit the fields raises ValueError/TypeError."""

    __slots__ = ()

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))  # type: ignore[call-overload]

    @classmethod
    def from_json(cls: type[Self], raw: str | bytes) -> Self:
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError(f"{cls.__name__} must be a JSON object")
        return cls(**data)


@dataclass(frozen=True, slots=True)
class StepUpRequest(_JsonRecord):
    """One OIDC authorization request, after client, redirect_uri and subject were checked.

    It outlives the vendor token (docs/architecture.md, "The challenge state machine") so that
    every ending, even an abandoned challenge, can still be reported to ``redirect_uri`` with
    ``state`` and ``iss``.
    """

    client_id: str
    redirect_uri: str
    scope: str
    subject: str
    scan_ref: str
    acr: str
    method: str
    check_type: str = "AUTHENTICATION"
    state: str | None = None
    nonce: str | None = None
    code_challenge: str | None = None
    code_challenge_method: str | None = None
    max_age: int | None = None
    claims: dict[str, Any] = field(default_factory=dict)
    # The subject was named by a signed hint (see policy.Subject): only then do its failures
    # count against it or lock it out.
    verified: bool = False
    # The pages' language chosen at /authorize (ui_locales, Accept-Language, ui.default_language):
    # every page of this challenge and its retries, and the vendor's frame, use it.
    locale: str | None = None
    # RFC 9396: what the person approves (validated at /authorize), and this step-up's own id
    # (the id_token's txn). A retry keeps both: it reuses this request.
    authorization_details: list[dict[str, Any]] = field(default_factory=list)
    txn: str = ""

    def to_json(self) -> str:
        """Short names, defaults left out: it is stored once per pending challenge."""
        record = asdict(self)
        data = {_SHORT[k]: v for k, v in record.items() if v != _DEFAULTS.get(k, _NO_DEFAULT)}
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> StepUpRequest:
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("StepUpRequest must be a JSON object")
        return cls(**{**_FILLED, **{str(_LONG.get(k, k)): v for k, v in data.items()}})


_SHORT = {
    "client_id": "c",
    "redirect_uri": "r",
    "scope": "sc",
    "subject": "u",
    "scan_ref": "k",
    "acr": "a",
    "method": "m",
    "check_type": "t",
    "state": "s",
    "nonce": "n",
    "code_challenge": "cc",
    "code_challenge_method": "cm",
    "max_age": "ma",
    "claims": "cl",
    "verified": "v",
    "locale": "l",
    "authorization_details": "ad",
    "txn": "x",
}
# An unknown short name stays unknown (``cls(**…)`` then raises TypeError: unreadable).
_LONG = {v: k for k, v in _SHORT.items()}
_NO_DEFAULT = object()
# What nearly every request has in fields the dataclass requires: left out of the JSON like a
# default, filled in again when it is read (a pending challenge stores its request).
_FILLED: dict[str, Any] = {"scope": "openid", "method": "FACE_MATCHING"}
_DEFAULTS: dict[str, Any] = {
    **_FILLED,
    "check_type": "AUTHENTICATION",
    "state": None,
    "nonce": None,
    "code_challenge": None,
    "code_challenge_method": None,
    "max_age": None,
    "claims": {},
    "verified": False,
    "locale": None,
    "authorization_details": [],
    "txn": "",
}


def stored_default(name: str) -> Any:
    """The value of the request's field ``name`` that its JSON leaves out (the store's scripts
    read the JSON too)."""
    return _DEFAULTS[name]


@dataclass(frozen=True, slots=True)
class CodeGrant(_JsonRecord):
    """What an authorization code stands for; stored under the code's SHA-256 only."""

    client_id: str
    redirect_uri: str
    scope: str
    subject: str
    acr: str
    auth_time: int
    nonce: str | None = None
    code_challenge: str | None = None
    code_challenge_method: str | None = None
    claims: dict[str, Any] = field(default_factory=dict)
    # The riskTags the policy allowed (the id_token's stepup_risk), whether the webhook's
    # ipAddress differed from the opening address (stepup_ip), and whether the face check was
    # an enrollment (check-status ENROLLMENT: stepup_enrollment, amr "enroll").
    risk: tuple[str, ...] = ()
    ip_differs: bool = False
    enrollment: bool = False
    authorization_details: list[dict[str, Any]] = field(default_factory=list)
    txn: str = ""

    @classmethod
    def from_request(
        cls,
        request: StepUpRequest,
        auth_time: int,
        risk: tuple[str, ...] = (),
        ip_differs: bool = False,
    ) -> CodeGrant:
        return cls(
            client_id=request.client_id,
            redirect_uri=request.redirect_uri,
            scope=request.scope,
            subject=request.subject,
            acr=request.acr,
            auth_time=auth_time,
            nonce=request.nonce,
            code_challenge=request.code_challenge,
            code_challenge_method=request.code_challenge_method,
            claims=request.claims,
            risk=risk,
            ip_differs=ip_differs,
            enrollment=request.check_type == "ENROLLMENT",
            authorization_details=request.authorization_details,
            txn=request.txn,
        )
