"""What ``challenge show`` and ``limits show`` print: a challenge without its secrets, and a
counter beside its configured limit."""

from __future__ import annotations

from typing import Any

from ..stepup.limits import FIELDS
from ..stepup.records import StepUpRequest

# The challenge fields shown, and how: nothing that opens, proves or names anything (never the
# binding, the code or access-token digests, the scanRef, the webhook id, the address tag, the
# next attempt's token).
TIMES = ("expires_at", "auth_time", "denied_at", "retry_at", "code_exp", "at_exp")
PLAIN = ("state", "consumed_as", "outcome", "attempt", "type", "method", "risk")
FLAGS = {"retryable": "retryable", "ip_differs": "ip_differs", "reused": "reused"}


def challenge_view(fields: dict[str, str], raw: str | None) -> dict[str, Any]:
    view: dict[str, Any] = {k: fields[k] for k in PLAIN if k in fields}
    if "attempt" in view:
        view["attempt"] = int(view["attempt"]) if view["attempt"].isdigit() else view["attempt"]
    for name in TIMES:
        if name in fields:
            try:
                view[name] = int(float(fields[name]))
            except ValueError:
                view[name] = "unreadable"
    for name, shown in FLAGS.items():
        if name in fields:
            view[shown] = fields[name] == "1"
    view["webhook_received"] = "webhook_id" in fields
    view["code_issued"] = "code" in fields
    view["code_redeemed"] = "at" in fields
    view["access_token_revoked"] = fields.get("at") == "revoked"
    view["next_attempt"] = "next" in fields
    if raw is not None:
        try:
            request = StepUpRequest.from_json(raw)
        except (ValueError, TypeError):
            view["request"] = "unreadable"
        else:
            # A challenge's type and method are its request's (the layout before copied them
            # into the hash, where they are read first).
            view.setdefault("type", request.check_type)
            view.setdefault("method", request.method)
            view["client_id"] = request.client_id
            view["subject"] = request.subject
            view["acr"] = request.acr
            view["subject_verified"] = request.verified
            view["txn"] = request.txn or None
            view["locale"] = request.locale
            view["authorization_details"] = len(request.authorization_details)
    return view


def counter(fields: dict[str, str], name: str, limit: Any, now_ms: float) -> dict[str, Any]:
    field = FIELDS[name]
    ends = float(fields.get(f"{field}:e", 0) or 0)
    count = int(fields.get(field, 0) or 0) if ends > now_ms else 0
    entry: dict[str, Any] = {"limit": name, "count": count}
    if limit is None:
        entry.update(max=None, window_seconds=None)
    else:
        entry.update(max=limit.count, window_seconds=limit.seconds, over=count >= limit.count)
    entry["window_ends_in"] = max(0, int((ends - now_ms) / 1000)) if count else None
    return entry


def counter_line(entry: dict[str, Any]) -> str:
    if entry["max"] is None:
        return f"  {entry['limit']}: {entry['count']} (limit off)"
    ends = entry["window_ends_in"]
    window = f", window ends in {ends} s" if ends is not None else ""
    over = " — OVER" if entry.get("over") else ""
    return (
        f"  {entry['limit']}: {entry['count']} of {entry['max']} per {entry['window_seconds']} s"
        f"{window}{over}"
    )
