"""A stand-in for iDenfy face authentication, for development and integrators' tests.

It speaks iDenfy's API as docs/idenfy-api.md describes it, on its own origin, and is never
imported by production code paths. Build it with :func:`create_simulator_app`.

Vendor endpoints (HTTP Basic auth with ``api_key`` : ``api_secret``; 401 otherwise):

- ``GET /identification/facial-auth/{scanRef}/check-status/?method=FACE_MATCHING|ACTIVE_LIVENESS``
  → ``{"type": "AUTHENTICATION" | "ENROLLMENT" | "IDENTIFICATION"}``; 404 for unknown scanRefs.
- ``POST /partner/authentication-info`` ``{"scanRef", "type"?, "method"?, "lifetime"?,
  "locale"?, "generateDigitString"?}`` → ``{"token", "scanRef", "type", "method", "lifetime",
  "locale"}``. A session that gets no outcome within ``lifetime`` seconds is sent an
  ``EXPIRED`` webhook.
- ``GET /api/v2/facial-authentication-sessions/`` and ``…/{token}/`` → FacialAuthenticationSession.

Browser page: ``GET /?token=…`` shows one button per outcome (``button[data-outcome]``, plus
``data-fail-reason`` for each failure reason); a click records the outcome like the endpoint
below, then posts ``{status: "APPROVED" | "FAILED"}`` to the parent window.

Scripting endpoints (no authentication: never expose the simulator publicly):

- ``POST /_simulator/sessions/{token}/outcome`` ``{"status": "SUCCESS" | "FAILED" | "EXPIRED" |
  "CANCELED", "failReason"?: str, "riskTags"?: [str] | null, "ipAddress"?: str | null,
  "force"?: bool}`` → ``{"delivered": <provider's HTTP status or null>, "attempts": n, "id":
  <webhook id>}`` after delivery (up to 10 retries). ``riskTags`` and ``ipAddress`` go into the
  webhook as given (both null by default), e.g. ``["UNTRUSTED_ENVIRONMENT"]``. The first outcome
  wins: later calls get 409 ``{"error": "already_finished"}`` unless ``force`` is true, which sends
  a further webhook with a fresh id (a conflicting vendor duplicate) and keeps the first outcome.
- ``GET /_simulator/sessions/{token}`` → the session, its outcome and every webhook sent.
- ``POST /_simulator/webhooks/{token}/resend`` → re-sends the last webhook byte for byte, same
  ``id`` (an exact vendor duplicate); same answer as the outcome endpoint; 409 if none was sent.
- ``PUT /_simulator/scan-refs/{scanRef}`` ``{"type": "AUTHENTICATION" | "ENROLLMENT" |
  "IDENTIFICATION"}`` adds or changes a scanRef; ``DELETE`` removes it (check-status then 404s).
- ``PUT /_simulator/outage`` ``{"mode": "hang" | "500" | "502" | "503" | "401" | "402" | "403" |
  "429"}`` makes every partner-API request hang (until the outage ends or the caller gives up)
  or get that error; ``DELETE`` ends it (hanging requests are then answered normally); ``GET``
  → ``{"mode", "requests": <partner-API requests received>, "hanging": n}``.

Unknown tokens get 404 everywhere; malformed bodies get 400.
"""

from .app import create_simulator_app

__all__ = ["create_simulator_app"]
