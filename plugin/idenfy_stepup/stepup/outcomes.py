"""Every way a step-up can end or be refused, mapped to OAuth/OIDC error codes.

Each row is data: the standard ``error`` (RFC 6749 §4.1.2.1, OIDC Core §3.1.2.6), our stable
``stepup_error``, the public ``error_description``, a plain-language hint for the person,
whether a new attempt is offered, and the columns the abuse limits decide by. Operators
override any of the first five fields per row in YAML (``errors:``); every refusal the provider
emits at /authorize and on the challenge pages is looked up here by its row name, so an
override applies wherever the row is used. /token, /userinfo and the webhook answer their
own protocols' fixed codes (RFC 6749 §5.2, RFC 6750 §3.1) and are not in the table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Protocol

DENIED = "access_denied"
UNMET = "unmet_authentication_requirements"
UNAVAILABLE = "temporarily_unavailable"
INVALID_REQUEST = "invalid_request"


@dataclass(frozen=True, slots=True)
class Outcome:
    """One row. The last three columns are what the code decides by, never the codes an
    operator may rename: ``vendor_fail_reason`` (the row is one of the webhook's failReasons),
    ``counts_against_subject`` (a failed check of the subject's own, toward
    ``failures_per_subject``) and ``locks_subject`` (a spoofing signal: the subject is locked
    out for ``spoof_lockout_seconds``)."""

    name: str
    error: str
    stepup_error: str
    description: str
    hint: str
    retryable: bool = False
    vendor_fail_reason: bool = False
    counts_against_subject: bool = False
    locks_subject: bool = False


def _row(
    name: str, error: str, code: str, description: str, hint: str, retry: bool = False
) -> Outcome:
    return Outcome(name, error, code, description, hint, retry)


def _reason(
    name: str, code: str, description: str, hint: str, retry: bool = False, locks: bool = False
) -> Outcome:
    """A failReason of the vendor's webhook: a failed check of the subject's own."""
    return Outcome(name, DENIED, code, description, hint, retry, True, True, locks)


_ROWS = [
    _row(
        "CANCELED",
        DENIED,
        "user_canceled",
        "The user canceled the face check.",
        "You canceled the face check.",
    ),
    _row(
        "EXPIRED",
        DENIED,
        "challenge_expired",
        "The face check expired before it was completed.",
        "The face check took too long and expired.",
    ),
    _reason(
        "FACE_MISMATCH",
        "face_mismatch",
        "The face did not match the enrolled person.",
        "The face did not match the person on file.",
    ),
    _reason(
        "PROBABILITY_TOO_SMALL",
        "low_confidence",
        "The face match was not confident enough.",
        "We could not confirm it is you.",
    ),
    _reason(
        "FAKE_FACE",
        "spoof_detected",
        "A presentation attack was detected.",
        "The check did not see a live person.",
        locks=True,
    ),
    _reason(
        "VIRTUAL_CAMERA",
        "virtual_camera",
        "A virtual camera was detected.",
        "A virtual camera was detected; use your device's real camera.",
        locks=True,
    ),
    _reason(
        "FAKE_CAPTURE",
        "capture_tampered",
        "The capture appears to be tampered with.",
        "The camera capture could not be trusted.",
        locks=True,
    ),
    _reason(
        "DUPLICATE_IMAGE",
        "duplicate_image",
        "The image was already used before.",
        "The photo was already used in an earlier check.",
    ),
    _reason(
        "FACE_NOT_FOUND",
        "face_not_found",
        "No face was found in the capture.",
        "We could not see a face. Look straight at the camera in good light.",
        True,
    ),
    _reason(
        "TOO_MANY_FACES",
        "multiple_faces",
        "More than one face was in the capture.",
        "More than one face was in view. Make sure only you are in the picture.",
        True,
    ),
    _reason(
        "FACE_ANGLE_TOO_LARGE",
        "face_angle",
        "The face was turned too far.",
        "Your head was turned. Face the camera straight on.",
        True,
    ),
    _reason(
        "FACE_TOO_SMALL",
        "face_too_small",
        "The face was too small in the capture.",
        "Your face was too small. Hold the camera a little closer.",
        True,
    ),
    _reason(
        "FACE_CLOSE_TO_BORDER",
        "face_near_border",
        "The face was too close to the edge.",
        "Your face was near the edge. Keep it in the middle of the frame.",
        True,
    ),
    _reason(
        "FACE_TOO_CLOSE",
        "face_too_close",
        "The face was too close to the camera.",
        "You were too close. Hold the phone further away.",
        True,
    ),
    _reason(
        "FACE_CROPPED",
        "face_cropped",
        "The face was cut off in the capture.",
        "Part of your face was cut off. Keep your whole face in the frame.",
        True,
    ),
    _reason(
        "FACE_IS_OCCLUDED",
        "face_occluded",
        "The face was covered.",
        "Something covered your face. Remove glasses, masks or hair from your face.",
        True,
    ),
    _reason(
        "EYES_CLOSED",
        "eyes_closed",
        "The eyes were closed.",
        "Your eyes were closed. Keep them open and look at the camera.",
        True,
    ),
    _reason(
        "FAILED_TO_PREDICT_LANDMARKS",
        "landmarks_failed",
        "The face could not be analysed.",
        "Your face could not be read. Use even light and hold the camera still.",
        True,
    ),
    # An unknown failReason (or none): still a failed check of the subject's own.
    Outcome(
        "UNKNOWN",
        DENIED,
        "verification_failed",
        "The face check failed.",
        "The face check did not succeed.",
        counts_against_subject=True,
    ),
    _row(
        "NOT_ENROLLED",
        UNMET,
        "not_enrolled",
        "The user is not enrolled for face authentication.",
        "Your account is not set up for face checks. Contact the service you came from.",
    ),
    _row(
        "ACR_UNSUPPORTED",
        UNMET,
        "acr_unsupported",
        "The requested authentication level is not available.",
        "The requested check is not available.",
    ),
    _row(
        "VENDOR_UNAVAILABLE",
        UNAVAILABLE,
        "vendor_unavailable",
        "The face check service is unavailable.",
        "The face check service is not available right now. Try again in a few minutes.",
    ),
    _row(
        "STORE_UNAVAILABLE",
        UNAVAILABLE,
        "store_unavailable",
        "The step-up service is temporarily unavailable.",
        "The service is not available right now. Try again in a few minutes.",
    ),
    _row(
        "RATE_LIMITED",
        UNAVAILABLE,
        "rate_limited",
        "Too many step-up requests; try again later.",
        "There were too many attempts. Wait a few minutes, then try again.",
    ),
    # A SUCCESS the vendor flagged (riskTags) or finished from another address than the one
    # that opened the challenge: denied under idenfy.risk_tags / idenfy.webhook_ip_policy.
    _row(
        "RISK_UNTRUSTED_ENVIRONMENT",
        DENIED,
        "risk_untrusted_environment",
        "The face check passed in an environment the vendor does not trust.",
        "The check could not be trusted on this device. Close remote-access, emulator or "
        "screen-sharing tools, then start again from the service you came from.",
    ),
    _row(
        "RISK_FLAGGED",
        DENIED,
        "risk_flagged",
        "The face check passed but the vendor flagged a risk.",
        "The check could not be trusted. Start again from the service you came from.",
    ),
    _row(
        "IP_MISMATCH",
        DENIED,
        "ip_mismatch",
        "The face check was completed from another network address than the one that started it.",
        "The check was completed on another device or network than the one that started it. "
        "Start again, and finish the check on this device.",
    ),
    _row(
        "ENROLLMENT_REFUSED",
        UNMET,
        "enrollment_required",
        "The user has no face reference yet; an enrollment is not accepted as a step-up.",
        "Your face is not registered for face checks yet. Contact the service you came from.",
    ),
    _row(
        "SUBJECT_LOCKED",
        DENIED,
        "subject_locked",
        "Face checks for this user are locked after a spoofing attempt.",
        "Face checks for your account are paused for a while. Contact the service you came from.",
    ),
    # -- refusals of the request itself at /authorize, once client_id and redirect_uri are
    # validated (each may carry a more specific description: see OutcomeTable.resolve) -------
    _row(
        "INVALID_REQUEST",
        INVALID_REQUEST,
        "invalid_request",
        "The request is not valid.",
        "The service you came from sent a request that cannot be processed.",
    ),
    _row(
        "PKCE_REQUIRED",
        INVALID_REQUEST,
        "pkce_required",
        "PKCE is required: send code_challenge with code_challenge_method=S256.",
        "The service you came from sent a request that cannot be processed.",
    ),
    _row(
        "INVALID_SCOPE",
        "invalid_scope",
        "invalid_scope",
        "The scope must include openid.",
        "The service you came from sent a request that cannot be processed.",
    ),
    _row(
        "UNSUPPORTED_RESPONSE_TYPE",
        "unsupported_response_type",
        "unsupported_response_type",
        "Only response_type=code is supported.",
        "The service you came from sent a request that cannot be processed.",
    ),
    _row(
        "LOGIN_REQUIRED",
        "login_required",
        "login_required",
        "A face check needs the user: prompt=none is served only by a recent face check.",
        "The service you came from asked for a check without showing it to you.",
    ),
    # An unknown client_id: only ever a page (there is nothing trusted to redirect to).
    _row(
        "INVALID_CLIENT",
        "invalid_client",
        "invalid_client",
        "The client is not known.",
        "The service you came from is not registered here.",
    ),
    _row(
        "INVALID_REQUEST_OBJECT",
        "invalid_request_object",
        "invalid_request_object",
        "The request object is not valid.",
        "The service you came from sent a request that cannot be processed.",
    ),
    _row(
        "INVALID_AUTHORIZATION_DETAILS",
        "invalid_authorization_details",
        "invalid_authorization_details",
        "The authorization_details parameter is not valid.",
        "The service you came from asked you to approve something that cannot be shown.",
    ),
    _row(
        "REQUEST_URI_NOT_SUPPORTED",
        "request_uri_not_supported",
        "request_uri_not_supported",
        "The request_uri parameter is not supported.",
        "The service you came from sent a request that cannot be processed.",
    ),
    # Pushed authorization requests (RFC 9126): a client that must push (a redirect), and a
    # request_uri from /par that is unknown, expired, used or another client's (a page: the
    # redirect_uri and state are in the pushed request, which is not there).
    _row(
        "PAR_REQUIRED",
        INVALID_REQUEST,
        "par_required",
        "This client must push its authorization requests to the pushed authorization request "
        "endpoint (/par) and send only client_id and request_uri to /authorize.",
        "The service you came from sent a request that cannot be processed.",
    ),
    _row(
        "INVALID_REQUEST_URI",
        "invalid_request_uri",
        "invalid_request_uri",
        "The request_uri is unknown, expired, already used or was pushed by another client.",
        "This sign-in link has expired or was already used. Start again from the service you "
        "came from.",
    ),
    _row(
        "SUBJECT_REQUIRED",
        INVALID_REQUEST,
        "subject_required",
        "No subject hint this client may use was given.",
        "The service you came from did not say who should be checked.",
    ),
    _row(
        "SUBJECT_CONFLICT",
        INVALID_REQUEST,
        "subject_conflict",
        "The subject hints name different subjects.",
        "The service you came from named two different people.",
    ),
    _row(
        "INVALID_ID_TOKEN_HINT",
        INVALID_REQUEST,
        "invalid_id_token_hint",
        "The id_token_hint could not be verified.",
        "The service you came from sent a sign-in that cannot be verified.",
    ),
    # -- the challenge's own pages (and its push stream): shown to the browser, never sent to an
    # RP. The page's title is the description, its message the hint, its detail the code --
    _row(
        "WRONG_BROWSER",
        DENIED,
        "wrong_browser",
        "This check belongs to another browser.",
        "Start again from the application.",
    ),
    _row(
        "CHALLENGE_GONE",
        DENIED,
        "challenge_expired",
        "This check has ended.",
        "It expired or was already used. Start again from the application.",
    ),
    _row(
        "CHALLENGE_CONSUMED",
        DENIED,
        "challenge_consumed",
        "This check is complete.",
        "The application already has its result. You can close this page.",
    ),
]

DEFAULTS: Mapping[str, Outcome] = {row.name: row for row in _ROWS}
OUTCOME_NAMES = frozenset(DEFAULTS)
# The sets the code decides by, derived from the columns (by row name, so an ``errors:``
# override, which may rename codes, never changes them).
FAIL_REASONS = tuple(row.name for row in _ROWS if row.vendor_fail_reason)
SUBJECT_FAILURES = frozenset(row.name for row in _ROWS if row.counts_against_subject)
LOCKOUT_OUTCOMES = frozenset(row.name for row in _ROWS if row.locks_subject)
# OAuth error codes authlib raises at /authorize, and the row each is reported as. A code
# authlib might add later, with no row of its own, is reported as INVALID_REQUEST (with
# authlib's description), so every redirect still goes through the table.
PROTOCOL_ERRORS: Mapping[str, str] = {
    "invalid_request": "INVALID_REQUEST",
    "invalid_client": "INVALID_CLIENT",
    "invalid_scope": "INVALID_SCOPE",
    "unsupported_response_type": "UNSUPPORTED_RESPONSE_TYPE",
    "login_required": "LOGIN_REQUIRED",
    "invalid_request_object": "INVALID_REQUEST_OBJECT",
    "request_uri_not_supported": "REQUEST_URI_NOT_SUPPORTED",
}


class Override(Protocol):
    """The shape of one ``errors:`` entry in the YAML (``config.ErrorOverride``)."""

    @property
    def error(self) -> str | None: ...
    @property
    def stepup_error(self) -> str | None: ...
    @property
    def description(self) -> str | None: ...
    @property
    def hint(self) -> str | None: ...
    @property
    def retryable(self) -> bool | None: ...


class OutcomeTable:
    """The defaults with the operator's overrides applied, built once at start-up."""

    def __init__(self, overrides: Mapping[str, Override] | None = None) -> None:
        rows = dict(DEFAULTS)
        for name, o in (overrides or {}).items():
            base = rows[name]
            rows[name] = replace(
                base,
                error=o.error or base.error,
                stepup_error=o.stepup_error or base.stepup_error,
                description=o.description or base.description,
                hint=o.hint or base.hint,
                retryable=base.retryable if o.retryable is None else o.retryable,
            )
        self._rows = rows
        self._described = frozenset(n for n, o in (overrides or {}).items() if o.description)

    def __getitem__(self, name: str) -> Outcome:
        return self._rows[name]

    def resolve(self, name: str, description: str | None = None) -> Outcome:
        """Row ``name`` as the RP sees it. ``description`` is the refusal's own, more specific
        one ("The claims parameter is not valid JSON."): it replaces the row's default, but an
        operator's ``errors:`` description replaces both, as every other field does."""
        row = self._rows[name]
        if description is None or name in self._described:
            return row
        return replace(row, description=description)

    def protocol(self, error: str, description: str | None) -> Outcome:
        """The row of an OAuth error code authlib raised (see :data:`PROTOCOL_ERRORS`)."""
        return self.resolve(PROTOCOL_ERRORS.get(error, "INVALID_REQUEST"), description)

    def for_webhook(self, status: str, fail_reason: str | None) -> Outcome:
        """The outcome of a terminal, non-success webhook. Unknown values count as failure."""
        status = status.upper()
        if status in ("CANCELED", "CANCELLED"):
            return self._rows["CANCELED"]
        if status == "EXPIRED":
            return self._rows["EXPIRED"]
        reason = (fail_reason or "").upper()
        if reason in FAIL_REASONS:
            return self._rows[reason]
        return self._rows["UNKNOWN"]
