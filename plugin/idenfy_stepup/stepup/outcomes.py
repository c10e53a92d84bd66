"""Every way a step-up can end, mapped to OAuth/OIDC error codes (design.md §5).

Each row is data: the standard ``error`` (RFC 6749 §4.1.2.1, OIDC Core §3.1.2.6), our stable
``stepup_error``, the public ``error_description``, a plain-language hint for the person, and
whether a new attempt is offered. Operators override any field per row in YAML (``errors:``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Protocol

DENIED = "access_denied"
UNMET = "unmet_authentication_requirements"
UNAVAILABLE = "temporarily_unavailable"


@dataclass(frozen=True, slots=True)
class Outcome:
    name: str
    error: str
    stepup_error: str
    description: str
    hint: str
    retryable: bool = False


def _row(
    name: str, error: str, code: str, description: str, hint: str, retry: bool = False
) -> Outcome:
    return Outcome(name, error, code, description, hint, retry)


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
    _row(
        "FACE_MISMATCH",
        DENIED,
        "face_mismatch",
        "The face did not match the enrolled person.",
        "The face did not match the person on file.",
    ),
    _row(
        "PROBABILITY_TOO_SMALL",
        DENIED,
        "low_confidence",
        "The face match was not confident enough.",
        "We could not confirm it is you.",
    ),
    _row(
        "FAKE_FACE",
        DENIED,
        "spoof_detected",
        "A presentation attack was detected.",
        "The check did not see a live person.",
    ),
    _row(
        "VIRTUAL_CAMERA",
        DENIED,
        "virtual_camera",
        "A virtual camera was detected.",
        "A virtual camera was detected; use your device's real camera.",
    ),
    _row(
        "FAKE_CAPTURE",
        DENIED,
        "capture_tampered",
        "The capture appears to be tampered with.",
        "The camera capture could not be trusted.",
    ),
    _row(
        "DUPLICATE_IMAGE",
        DENIED,
        "duplicate_image",
        "The image was already used before.",
        "The photo was already used in an earlier check.",
    ),
    _row(
        "FACE_NOT_FOUND",
        DENIED,
        "face_not_found",
        "No face was found in the capture.",
        "We could not see a face. Look straight at the camera in good light.",
        True,
    ),
    _row(
        "TOO_MANY_FACES",
        DENIED,
        "multiple_faces",
        "More than one face was in the capture.",
        "More than one face was in view. Make sure only you are in the picture.",
        True,
    ),
    _row(
        "FACE_ANGLE_TOO_LARGE",
        DENIED,
        "face_angle",
        "The face was turned too far.",
        "Your head was turned. Face the camera straight on.",
        True,
    ),
    _row(
        "FACE_TOO_SMALL",
        DENIED,
        "face_too_small",
        "The face was too small in the capture.",
        "Your face was too small. Hold the camera a little closer.",
        True,
    ),
    _row(
        "FACE_CLOSE_TO_BORDER",
        DENIED,
        "face_near_border",
        "The face was too close to the edge.",
        "Your face was near the edge. Keep it in the middle of the frame.",
        True,
    ),
    _row(
        "FACE_TOO_CLOSE",
        DENIED,
        "face_too_close",
        "The face was too close to the camera.",
        "You were too close. Hold the phone further away.",
        True,
    ),
    _row(
        "FACE_CROPPED",
        DENIED,
        "face_cropped",
        "The face was cut off in the capture.",
        "Part of your face was cut off. Keep your whole face in the frame.",
        True,
    ),
    _row(
        "FACE_IS_OCCLUDED",
        DENIED,
        "face_occluded",
        "The face was covered.",
        "Something covered your face. Remove glasses, masks or hair from your face.",
        True,
    ),
    _row(
        "EYES_CLOSED",
        DENIED,
        "eyes_closed",
        "The eyes were closed.",
        "Your eyes were closed. Keep them open and look at the camera.",
        True,
    ),
    _row(
        "FAILED_TO_PREDICT_LANDMARKS",
        DENIED,
        "landmarks_failed",
        "The face could not be analysed.",
        "Your face could not be read. Use even light and hold the camera still.",
        True,
    ),
    _row(
        "UNKNOWN",
        DENIED,
        "verification_failed",
        "The face check failed.",
        "The face check did not succeed.",
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
]

DEFAULTS: Mapping[str, Outcome] = {row.name: row for row in _ROWS}
OUTCOME_NAMES = frozenset(DEFAULTS)
# Denials that are our own decisions, not a webhook's failReason.
_OWN_DENIALS = frozenset(
    {"CANCELED", "EXPIRED", "UNKNOWN", "SUBJECT_LOCKED", "RISK_UNTRUSTED_ENVIRONMENT",
     "RISK_FLAGGED", "IP_MISMATCH"}
)  # fmt: skip
FAIL_REASONS = tuple(
    name for name in DEFAULTS if name not in _OWN_DENIALS and DEFAULTS[name].error == DENIED
)
# Spoofing signals: a webhook with one of these locks its subject out for
# ``challenge.limits.spoof_lockout_seconds`` (by outcome name, so overrides do not change it).
LOCKOUT_OUTCOMES = frozenset({"FAKE_FACE", "VIRTUAL_CAMERA", "FAKE_CAPTURE"})


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

    def __getitem__(self, name: str) -> Outcome:
        return self._rows[name]

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
