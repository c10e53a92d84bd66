"""When a recent face check of the same browser may answer a new request without a new one.

A client with ``reuse_within`` > 0 lets a successful face check answer its later requests from
the same browser for that many seconds after the check (its ``auth_time``). Reuse applies only
when every rule below lets it: the request's own rules first (no Redis read when one refuses),
then the record's. The order of levels is a method ranking (``METHOD_RANK``): a check at a
level whose method ranks at least as high as the requested level's serves the request.

A check whose approval the vendor flagged (allowed riskTags, a differing address) or that was
an enrollment never becomes a reuse record: its id_token says so, and a reuse would answer
without those claims.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from starlette.responses import Response

from ..boot.runtime import Runtime
from .records import StepUpRequest, _JsonRecord

log = logging.getLogger("idenfy_stepup")

# A higher rank proves more: active liveness asks the person to move, face matching compares
# a still capture. A level whose method is not ranked serves only its own requests' equals.
METHOD_RANK: dict[str, int] = {"FACE_MATCHING": 1, "ACTIVE_LIVENESS": 2}


@dataclass(frozen=True, slots=True)
class ReuseRecord(_JsonRecord):
    """One successful face check, as a reuse cookie's record in Redis holds it."""

    client_id: str
    subject: str
    acr: str
    auth_time: int

    def __post_init__(self) -> None:
        # A record of another shape is unreadable (from_json's callers: no reuse).
        texts = (self.client_id, self.subject, self.acr)
        if not all(isinstance(v, str) for v in texts) or type(self.auth_time) is not int:
            raise TypeError("not a reuse record")


@dataclass(frozen=True, slots=True)
class Ask:
    """What a new authorization request asks of a recent face check."""

    client_id: str
    subject: str
    method: str  # the requested level's
    prompt: frozenset[str]
    max_age: int | None
    authorization_details: bool
    reuse_within: int  # the client's


def prompts(raw: str | None) -> frozenset[str]:
    """The prompt parameter's values (space-separated, OIDC Core §3.1.2.1)."""
    return frozenset((raw or "").split())


# (why not, the rule): the first rule that holds refuses reuse.
REQUEST_RULES: tuple[tuple[str, Callable[[Ask], bool]], ...] = (
    ("the client does not reuse face checks", lambda a: a.reuse_within <= 0),
    ("prompt=login asks for a new face check", lambda a: "login" in a.prompt),
    ("max_age=0 asks for a new face check", lambda a: a.max_age == 0),
    # RFC 9396: a transaction the person approves is bound to the face check that approves it.
    ("authorization_details need a face check of their own", lambda a: a.authorization_details),
)
RecordRule = Callable[[ReuseRecord, Ask, int, int], bool]  # record, ask, age, record's rank
RECORD_RULES: tuple[tuple[str, RecordRule], ...] = (
    ("another client's face check", lambda r, a, age, rank: r.client_id != a.client_id),
    ("another subject's face check", lambda r, a, age, rank: r.subject != a.subject),
    ("a higher level asked", lambda r, a, age, rank: METHOD_RANK.get(a.method, 99) > rank),
    ("older than reuse_within", lambda r, a, age, rank: age >= a.reuse_within),
    ("older than max_age", lambda r, a, age, rank: a.max_age is not None and age > a.max_age),
)


def request_refusal(ask: Ask) -> str | None:
    return next((why for why, rule in REQUEST_RULES if rule(ask)), None)


def record_refusal(
    record: ReuseRecord, ask: Ask, now: int, levels: Mapping[str, str]
) -> str | None:
    """Why ``record`` cannot answer ``ask`` at ``now`` (``levels``: acr → method), or None."""
    method = levels.get(record.acr)
    if method is None:
        return "a level no longer offered"
    rank = METHOD_RANK.get(method, 0)
    age = now - record.auth_time
    return next((why for why, rule in RECORD_RULES if rule(record, ask, age, rank)), None)


async def find_reuse(rt: Runtime, cookies: Mapping[str, str], ask: Ask) -> ReuseRecord | None:
    """The face check of this browser that answers ``ask``, if one does. Raises
    StoreUnavailable (the endpoint's to report)."""
    if request_refusal(ask) is not None:
        return None
    secret = rt.reuse_cookies.secret_of(cookies, ask.client_id, ask.reuse_within)
    if not secret:
        return None
    raw = await rt.store.get_reuse(secret)
    try:
        record = ReuseRecord.from_json(raw) if raw else None
    except (ValueError, TypeError):
        return None  # unreadable: a new face check
    if record is None:
        return None
    levels = {acr: level.method for acr, level in rt.settings.acr.levels.items()}
    why = record_refusal(record, ask, int(time.time()), levels)
    if why is not None:
        log.debug("no reuse: %s", why, extra={"event": "stepup.reuse", "reused": False})
        return None
    return record


async def remember(
    rt: Runtime, response: Response, req: StepUpRequest, auth_time: int, flagged: bool
) -> None:
    """After a successful face check's code is issued: a reuse record for its client, when
    the client reuses checks, until ``auth_time`` + ``reuse_within``. Raises StoreUnavailable
    (then no cookie is set: the next request gets a new face check)."""
    client = rt.settings.client(req.client_id)
    if client is None or client.reuse_within <= 0 or auth_time <= 0:
        return
    if flagged or req.check_type == "ENROLLMENT":
        return
    ttl = auth_time + client.reuse_within - int(time.time())
    if ttl <= 0:
        return
    secret = rt.reuse_cookies.new_secret()
    record = ReuseRecord(req.client_id, req.subject, req.acr, auth_time)
    await rt.store.put_reuse(secret, record.to_json(), ttl)
    rt.reuse_cookies.attach(response, req.client_id, secret, ttl)
