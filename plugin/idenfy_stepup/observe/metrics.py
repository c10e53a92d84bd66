"""Every metric the provider exports, defined once (docs/operations.md lists them).

Label values come only from bounded sets: configured client_ids and acr levels, outcome codes,
route templates, fixed vendor call names, HTTP statuses and limit names. Never a token, a
subject or an address: each new label value is a new time series kept forever.

Under ``serve --workers N`` prometheus-client's multiprocess mode is on (the supervisor sets
``PROMETHEUS_MULTIPROC_DIR`` before spawning the workers, see :mod:`.multiproc`): every worker
writes its values to its own files in that directory and a scrape sums them.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# Seconds: a face check takes a person from a few seconds to minutes.
FACE_CHECK_BUCKETS = (2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
# Seconds: pushing "done" to a waiting browser, and HTTP or vendor calls.
FAST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

VENDOR_BREAKER_OPEN = Gauge(
    "stepup_vendor_breaker_open",
    "1 while this process's iDenfy circuit breaker is open (or probing), else 0.",
    multiprocess_mode="livemax",  # any live worker with an open breaker shows it
)
VENDOR_ALERTS = Counter(
    "stepup_vendor_alerts_total",
    "iDenfy refusals of our account: credentials_rejected (401), credit_exhausted (402), "
    "access_forbidden (403).",
    ("event",),
)
OUTCOMES = Counter(
    "stepup_outcomes_total",
    "Step-up outcomes sent to relying parties: result is the stepup_error, approved or reused.",
    ("client_id", "acr", "result"),
)
FACE_CHECK_SECONDS = Histogram(
    "stepup_face_check_seconds",
    "From the challenge's opening to the verified webhook that decided it.",
    buckets=FACE_CHECK_BUCKETS,
)
PUSH_LATENCY_SECONDS = Histogram(
    "stepup_push_latency_seconds",
    "From this process learning of a decided challenge to the push stream's done event.",
    buckets=FAST_BUCKETS,
)
PUSH_STREAMS_OPEN = Gauge(
    "stepup_push_streams_open",
    "Push streams (Server-Sent Events) open now.",
    multiprocess_mode="livesum",  # a dead worker's streams are gone
)
VENDOR_REQUESTS = Counter(
    "stepup_vendor_requests_total",
    "Requests to iDenfy's API by call and HTTP status (timeout or error: no reply).",
    ("call", "status"),
)
VENDOR_REQUEST_SECONDS = Histogram(
    "stepup_vendor_request_seconds",
    "Duration of requests to iDenfy's API, by call.",
    ("call",),
    buckets=FAST_BUCKETS,
)
REDIS_ERRORS = Counter(
    "stepup_redis_errors_total",
    "Redis calls that failed (the request was answered temporarily_unavailable).",
    ("operation",),
)
HTTP_REQUESTS = Counter(
    "stepup_http_requests_total",
    "HTTP requests by route template, method and status.",
    ("route", "method", "status"),
)
HTTP_REQUEST_SECONDS = Histogram(
    "stepup_http_request_seconds",
    "HTTP request duration by route template (a push stream: until it ends).",
    ("route", "method"),
    buckets=FAST_BUCKETS,
)
RATE_LIMITED = Counter(
    "stepup_rate_limited_total",
    "Requests refused by a limit, by the limit's name.",
    ("limit",),
)

# Every limit a refusal names (``stepup_rate_limited_total{limit}``).
LIMITS = (
    "failures_per_ip",
    "failures_per_subject",
    "spoof_lockout",
    "open_challenges_per_ip",
    "token_failures",
    "push_streams_per_ip",
)


def rate_limited(limit: str) -> None:
    RATE_LIMITED.labels(limit if limit in LIMITS else "other").inc()
