"""Audit events built from the provider's own records, where several places emit the same one."""

from __future__ import annotations

import math

from ..stepup.records import StepUpRequest
from ..store import digest
from . import events


def challenge_opened(
    req: StepUpRequest, token: str, attempt: int, expires_at: int, ip: str
) -> None:
    events.emit(
        events.CHALLENGE_OPENED,
        req.txn,
        **events.who(req),
        method=req.method,
        attempt=attempt,
        enrollment=req.check_type == "ENROLLMENT",
        verified=req.verified,
        expires_at=expires_at,
        challenge_id=events.challenge_id(token),
        **events.address_fields(ip),
    )


def code_issued(req: StepUpRequest, code: str, *, reused: bool) -> None:
    events.emit(
        events.CODE_ISSUED,
        req.txn,
        **events.who(req),
        challenge_id=events.challenge_id(code.rpartition(".")[0]),
        code_digest=code_digest(code),
        reused=reused,
    )


def code_digest(code: str) -> str:
    return digest(code)[:16]


def limit_exceeded(
    limit: str,
    endpoint: str,
    ip: str,
    txn: str | None = None,
    *,
    client_id: str | None = None,
    subject: str | None = None,
    retry_after: float | None = None,
) -> None:
    events.emit(
        events.LIMIT_EXCEEDED,
        txn,
        limit=limit,
        endpoint=endpoint,
        client_id=client_id,
        subject=subject,
        retry_after=max(1, math.ceil(retry_after)) if retry_after else None,
        **events.address_fields(ip),
    )
