"""Chaos at scale: 10,000 step-ups with misbehaving webhooks, a Redis restart and a killed worker.

The scale version of tests/scale/test_chaos_load.py, as a benchmark. The stack is load.py's,
started fresh: ``redis-server`` with AOF on a Unix socket, the iDenfy simulator as its own
process, and ``idenfy-stepup serve --workers 2`` in live mode pointed at it. Each flow is one
person (its own subject, address and cookie jar) with its relying party, its browser and the
vendor, and has a plan: the vendor's decision (80 % SUCCESS, else FAILED with FACE_MISMATCH,
which offers no new attempt) and one of the chaos test's kinds:

- plain: the webhook, "done" on the push stream, finish, token;
- duplicated (5 %): the webhook is re-sent byte for byte (same ``id``) while the browser
  finishes;
- reordered (5 %): a conflicting webhook of the other status (a fresh ``id``) arrives after the
  real one, or before it (every other reordered flow); whichever arrives first must win;
- delayed (5 %): the browser finishes before any webhook came (and is sent back to the page),
  then the webhook lands, "done" is pushed and the browser finishes again.

Every browser then finishes once more (a reload: the same answer again), and the RP redeems a
code, then replays it (which must fail). In the middle of the run, two faults: ``redis-server``
is stopped (SIGTERM) and started again on the same socket and data folder, so the AOF brings
the data back and the provider must reconnect; and one worker of ``serve`` is killed with
SIGKILL, which the supervisor replaces. The parties behave as real ones do meanwhile:

- the browser retries a request that got no answer or a 5xx (a reload), reconnects its push
  stream when it ends or fails (as EventSource and the page's script do) and, sent back to the
  page by a finish, reloads the page and waits again;
- the vendor re-delivers a webhook that got a non-2xx or no answer, with the same body and id;
- the RP retries the token request only when the connection failed (a code is single-use; a
  5xx is an answer).

Every flow has a deadline: one that ends with neither a code nor an error redirect by then is a
hang. An answer a fault explains is counted apart (``answers_a_fault_explains``), and the RP
starts that step-up again (up to 5 times): ``temporarily_unavailable``/``store_unavailable``
from /authorize or a 5xx from /token while Redis was down, or a 400 to a token request sent
again after its connection died with the killed worker (the first request had redeemed the
code). Anywhere else, such an answer is lost. A ``vendor_unavailable`` from /authorize (the
simulator did not answer within the provider's vendor timeouts: a loaded machine, no injected
fault) is started again too, and counted apart.

The report counts flows by kind, codes issued and redeemed, error redirects by error, lost (an
RP with no answer, or the wrong one), doubled (two codes for one step-up, or a code redeemed
twice), hangs, retries of each kind, when the faults happened, and the wall time.

    .venv/bin/python bench/chaos.py                                    # 10,000 flows, 200 at once
    .venv/bin/python bench/chaos.py --flows 200 --concurrency 20 --out /tmp/chaos.json

The provider runs this checkout's code (``plugin/`` first on PYTHONPATH). Prints one JSON
document. Not a test: no thresholds (tests/test_bench.py runs it small and checks the counts).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import hmac
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
from joserfc import jwt
from joserfc.jwk import KeySet

ROOT = Path(__file__).resolve().parent.parent
for entry in (ROOT, ROOT / "plugin"):
    if str(entry) not in sys.path:
        sys.path.insert(0, str(entry))

from bench.load import (  # noqa: E402
    ACR,
    BASIC,
    CLIENT_ID,
    MAIN,
    REDIRECT_URI,
    Stack,
    client_address,
    descendants,
    write_report,
)
from idenfy_stepup.idenfy.webhook import event_body  # noqa: E402

KINDS = ("plain", "duplicated", "reordered", "delayed")
SUCCESS_SHARE = 0.8
CHAOS_SHARE = 0.05  # of the flows, for each of: duplicated, reordered, delayed
FAIL_REASON = "FACE_MISMATCH"  # a denial that offers no new attempt: the RP gets its answer
SEED = 20240604
EVENT_TYPE = "FACIAL_AUTHENTICATION"
MAX_RESTARTS = 5  # how often an RP starts a step-up again after a fail-closed answer
RESTART_WAIT = 1.0
RELOAD_WAIT = 0.5  # a browser's reload, a retried finish: after a short wait
EVENTS_RETRY = 1.0  # the stream's "retry: 1000", and the page's reopen delay
WEBHOOK_BACKOFF = (0.2, 2.0)  # the vendor's first and longest pause between deliveries
# A fail-closed answer this long after Redis answered again still counts as the outage's: the
# provider's connection and subscription come back on their next command or backoff step.
OUTAGE_GRACE = 3.0
SAMPLED_KEYS = 200
# The temporarily_unavailable answers of /authorize: the provider could not reach its store, or
# the vendor did not answer in time (on a loaded machine, the simulator).
TRY_LATER = ("store_unavailable", "vendor_unavailable")
RAMP_UP = 2.0  # seconds over which the first flows start, as load.py staggers its users


# -- the plans ---------------------------------------------------------------------------------


@dataclass
class Plan:
    index: int
    status: str  # what the vendor decides: "SUCCESS" or "FAILED"
    kind: str  # one of KINDS
    conflict_first: bool = False  # reordered: the conflicting webhook is delivered first

    @property
    def other(self) -> str:
        return "FAILED" if self.status == "SUCCESS" else "SUCCESS"

    @property
    def applied_first(self) -> str:
        """The status of the first webhook the provider receives: the one that must win."""
        return self.other if self.conflict_first else self.status

    @property
    def subject(self) -> str:
        return f"u{self.index}"

    @property
    def address(self) -> str:
        return client_address(self.index)


def plans(flows: int, seed: int = SEED) -> list[Plan]:
    """The chaos test's mix, for ``flows`` flows."""
    rng = random.Random(seed)
    per_kind = round(flows * CHAOS_SHARE)
    kinds = sorted(["duplicated", "reordered", "delayed"] * per_kind)
    kinds += ["plain"] * (flows - len(kinds))
    rng.shuffle(kinds)
    successes = round(flows * SUCCESS_SHARE)
    statuses = ["SUCCESS"] * successes + ["FAILED"] * (flows - successes)
    rng.shuffle(statuses)
    out = [Plan(i, statuses[i], kinds[i]) for i in range(flows)]
    for n, plan in enumerate(p for p in out if p.kind == "reordered"):
        plan.conflict_first = n % 2 == 0
    return out


# -- what happened to one flow -----------------------------------------------------------------


@dataclass
class Answer:
    """One redirect to the RP (its query), or a refusal at /token, and when it came."""

    params: dict[str, str]
    at: float


@dataclass
class Result:
    plan: Plan
    state: str = ""
    nonce: str = ""
    answers: list[Answer] = field(default_factory=list)  # the first finish's, or /authorize's
    repeated: list[Answer] = field(default_factory=list)  # the reload's finish
    webhooks: list[str] = field(default_factory=list)  # each webhook's final result
    early_finish: str = ""  # delayed: where the finish before the webhook sent the browser
    redeemed: int = 0  # successful /token answers for this flow's codes
    token_answer: int | None = None  # the first redemption's status
    token_at: float = 0.0
    token_retried: float | None = None  # when the first redemption's connection was lost
    replay_answer: int | None = None
    replay_at: float = 0.0
    claims_ok: bool = False
    hang: str = ""  # the step a flow was at when its deadline passed
    crashed: str = ""  # the driver's own failure (an exception of the driver, not an answer)
    problems: list[str] = field(default_factory=list)  # unexpected answers along the way
    at_authorize: bool = False  # the answer came from /authorize, before any challenge


@dataclass
class Run:
    """A step-up as its RP sees it: one attempt, or more when it met a fail-closed answer."""

    plan: Plan
    attempts: list[Result] = field(default_factory=list)


def restart_cause(result: Result) -> str | None:
    """Why the RP starts this step-up again: a ``temporarily_unavailable`` redirect from
    /authorize (its store or the vendor did not answer), a 5xx from /token, or a code its first
    token request spent. Nothing else."""
    if result.answers and result.at_authorize:
        reason = result.answers[0].params.get("stepup_error", "")
        return reason if reason in TRY_LATER else None
    if result.token_answer is not None and result.token_answer >= 500:
        return f"token_{result.token_answer}"
    if result.token_answer == 400 and result.token_retried is not None:
        # The first request redeemed the code, and its answer went down with the worker: the
        # code is spent (and its tokens revoked by the replay), so the RP starts again.
        return "token_answer_lost"
    return None


class Unexpected(Exception):
    """An answer no party can act on (e.g. a 403 at finish): the flow ends here."""


@dataclass
class Fault:
    kind: str
    at_flows: int  # flows ended when it began
    start: float = 0.0  # seconds since the run began
    end: float = 0.0  # the stack was whole again
    detail: dict[str, Any] = field(default_factory=dict)


# -- the parties -------------------------------------------------------------------------------


def is_connection_error(exc: BaseException) -> bool:
    return isinstance(exc, aiohttp.ClientConnectionError | ConnectionError)


@dataclass
class Chaos:
    stack: Stack
    keys: KeySet
    connector: aiohttp.TCPConnector
    vendor: aiohttp.ClientSession
    deadline_s: float
    began: float = field(default_factory=time.monotonic)
    retries: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)  # 5xx answers seen, by step
    ended: int = 0
    progress: asyncio.Event = field(default_factory=asyncio.Event)

    def now(self) -> float:
        return time.monotonic() - self.began

    # The browser's requests: retried after a short wait when there is no answer or a 5xx.

    async def browse(
        self, session: aiohttp.ClientSession, url: str, step: str
    ) -> tuple[int, str, str]:
        """GET ``url`` as a browser: (status, Location, body); a reload on failure."""
        while True:
            try:
                async with session.get(url, allow_redirects=False) as response:
                    body = await response.text()
                    status, location = response.status, response.headers.get("location", "")
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                self.retries[f"{step}:{type(exc).__name__}"] += 1
            else:
                if status < 500:
                    return status, location, body
                self.statuses[f"{step}:{status}"] += 1
                self.retries[f"{step}:{status}"] += 1
            await asyncio.sleep(RELOAD_WAIT)

    async def wait_for_done(self, session: aiohttp.ClientSession, events_url: str) -> None:
        """The push stream until ``event: done``, reconnecting whenever it ends without it."""
        first = True
        while True:
            if not first:
                await asyncio.sleep(EVENTS_RETRY)
            first = False
            try:
                async with session.get(events_url) as stream:
                    if stream.status != 200:
                        self.statuses[f"events:{stream.status}"] += 1
                        self.retries[f"events:{stream.status}"] += 1
                        continue
                    async for line in stream.content:
                        if line.rstrip() == b"event: done":
                            return
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                self.retries[f"events:{type(exc).__name__}"] += 1
                continue
            self.retries["events:ended"] += 1

    # The vendor: a webhook is delivered until it gets a 2xx, with the same body and id.

    async def deliver(self, body: bytes) -> str:
        signature = hmac.new(self.stack.signing_key.encode(), body, hashlib.sha256).hexdigest()
        headers = {
            "Content-Type": "application/json",
            "Idenfy-Event-Type": EVENT_TYPE,
            "Idenfy-Signature": signature,
        }
        backoff, longest = WEBHOOK_BACKOFF
        while True:
            try:
                url = f"{self.stack.issuer}/webhooks/idenfy"
                async with self.vendor.post(url, data=body, headers=headers) as response:
                    status = response.status
                    answer = await response.json() if status == 200 else {}
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
                self.retries[f"webhook:{type(exc).__name__}"] += 1
            else:
                if 200 <= status < 300:
                    return str(answer.get("result"))
                if status >= 500:
                    self.statuses[f"webhook:{status}"] += 1
                self.retries[f"webhook:{status}"] += 1
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, longest)

    def webhook(self, plan: Plan, token: str, status: str) -> bytes:
        return event_body(
            token,
            status,
            event_id=str(uuid.uuid4()),
            scan_ref=f"SCAN-{plan.subject.upper()}",
            client_id="bench",
            fail_reason=FAIL_REASON if status == "FAILED" else None,
        )

    # The RP: the token request is retried only when the connection failed.

    async def redeem(
        self, code: str, verifier: str
    ) -> tuple[int | None, dict[str, Any], float | None]:
        """The token request: (status or None, the tokens, when its first connection was lost
        if it was sent again)."""
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
        }
        retried: float | None = None
        while True:
            try:
                url = f"{self.stack.issuer}/token"
                async with self.vendor.post(url, data=form, headers=BASIC) as response:
                    status = response.status
                    tokens = await response.json() if status == 200 else {}
                    if status >= 500:
                        self.statuses[f"token:{status}"] += 1
                    return status, tokens, retried
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
                if not is_connection_error(exc):
                    return None, {}, retried  # no answer, and not safe to ask again
                self.retries[f"token:{type(exc).__name__}"] += 1
                retried = self.now() if retried is None else retried
            await asyncio.sleep(RELOAD_WAIT)

    # One flow.

    async def run(self, plan: Plan) -> Run:
        """One step-up, started again by the RP while it meets a fail-closed answer."""
        run = Run(plan)
        where = ["start"]
        try:
            async with asyncio.timeout(self.deadline_s):
                while True:
                    result = Result(plan)
                    run.attempts.append(result)
                    await self.flow(plan, result, where)
                    cause = restart_cause(result)
                    if cause is None or len(run.attempts) > MAX_RESTARTS:
                        break
                    self.retries[f"rp_restart:{cause}"] += 1
                    await asyncio.sleep(RESTART_WAIT)
        except TimeoutError:
            run.attempts[-1].hang = where[0]
        except Unexpected as exc:
            run.attempts[-1].problems.append(str(exc))
        except Exception as exc:  # the driver's own bug: reported, never a silent pass
            run.attempts[-1].crashed = f"{where[0]}: {type(exc).__name__}: {exc}"
        self.ended += 1
        self.progress.set()
        return run

    async def flow(self, plan: Plan, result: Result, where: list[str]) -> None:
        verifier = secrets.token_urlsafe(48)
        digest = hashlib.sha256(verifier.encode()).digest()
        challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        result.state, result.nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
        query = urlencode(
            {
                "response_type": "code",
                "client_id": CLIENT_ID,
                "redirect_uri": REDIRECT_URI,
                "scope": "openid",
                "state": result.state,
                "nonce": result.nonce,
                "acr_values": ACR,
                "login_hint": plan.subject,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
        )
        browser = aiohttp.ClientSession(
            base_url=self.stack.issuer,
            connector=self.connector,
            connector_owner=False,
            headers={"X-Forwarded-For": plan.address},
            cookie_jar=aiohttp.CookieJar(unsafe=True),
            timeout=aiohttp.ClientTimeout(total=self.deadline_s),
        )
        async with browser:
            where[0] = "authorize"
            status, location, _ = await self.browse(browser, f"/authorize?{query}", "authorize")
            if status == 303 and location.startswith(REDIRECT_URI):
                result.answers.append(self.answer(location))  # refused at once: the RP's answer
                result.at_authorize = True
                return
            if status != 303 or not location.startswith("/challenge/"):
                raise Unexpected(f"authorize: {status} {urlsplit(location).path}")
            token = location.rsplit("/", 1)[1]
            where[0] = "page"
            finish_url, events_url = await self.page(browser, location)

            if plan.kind == "delayed":
                where[0] = "early finish"
                status, early, _ = await self.browse(browser, finish_url, "finish")
                result.early_finish = f"{status} {early}"
                if status != 303 or early != location:
                    raise Unexpected(f"early finish: {result.early_finish}")
                finish_url, events_url = await self.page(browser, early)  # sent back: reload

            where[0] = "push"
            pushed = asyncio.ensure_future(self.wait_for_done(browser, events_url))
            try:
                where[0] = "webhook"
                if plan.kind == "reordered" and plan.conflict_first:
                    result.webhooks.append(
                        await self.deliver(self.webhook(plan, token, plan.other))
                    )
                first = self.webhook(plan, token, plan.status)
                result.webhooks.append(await self.deliver(first))
                if plan.kind == "reordered" and not plan.conflict_first:
                    result.webhooks.append(
                        await self.deliver(self.webhook(plan, token, plan.other))
                    )
                where[0] = "push"
                await pushed
            finally:
                pushed.cancel()

            where[0] = "finish"
            if plan.kind == "duplicated":
                # The exact duplicate races the browser's finish.
                resent, answer = await asyncio.gather(
                    self.deliver(first), self.finish(browser, finish_url, location)
                )
                result.webhooks.append(resent)
            else:
                answer = await self.finish(browser, finish_url, location)
            result.answers.append(answer)
            where[0] = "reload finish"
            result.repeated.append(await self.finish(browser, finish_url, location))

        code = result.answers[0].params.get("code")
        if code is None:
            return
        where[0] = "token"
        status_or_none, tokens, result.token_retried = await self.redeem(code, verifier)
        result.token_answer, result.token_at = status_or_none, self.now()
        if status_or_none == 200:
            result.redeemed += 1
            result.claims_ok = self.claims_ok(tokens, plan, result.nonce)
        where[0] = "replay"
        result.replay_answer, _, _ = await self.redeem(code, verifier)
        result.replay_at = self.now()
        if result.replay_answer == 200:
            result.redeemed += 1

    async def page(self, browser: aiohttp.ClientSession, location: str) -> tuple[str, str]:
        """The challenge page: its finish and events URLs."""
        status, _, body = await self.browse(browser, location, "page")
        found = MAIN.search(body)
        if status != 200 or found is None:
            raise Unexpected(f"page: {status}")
        finish_url, events_url = found.groups()
        return finish_url, events_url

    async def finish(self, browser: aiohttp.ClientSession, finish_url: str, page: str) -> Answer:
        """The finish URL until it sends the browser to the RP (back to the page: wait)."""
        while True:
            status, location, _ = await self.browse(browser, finish_url, "finish")
            if status == 303 and location.startswith(REDIRECT_URI):
                return self.answer(location)
            if status == 303 and location == page:
                # "Pending" after "done" would be a provider bug; the browser waits and retries.
                self.retries["finish:pending"] += 1
                await asyncio.sleep(RELOAD_WAIT)
                continue
            raise Unexpected(f"finish: {status} {urlsplit(location).path}")

    def answer(self, location: str) -> Answer:
        query = parse_qs(urlsplit(location).query)
        return Answer({k: v[0] for k, v in query.items()}, self.now())

    def claims_ok(self, tokens: dict[str, Any], plan: Plan, nonce: str) -> bool:
        try:
            claims = jwt.decode(str(tokens.get("id_token", "")), self.keys).claims
        except ValueError:
            return False
        expected = {"iss": self.stack.issuer, "aud": CLIENT_ID, "sub": plan.subject}
        return all(claims.get(k) == v for k, v in expected.items()) and claims.get("nonce") == nonce


# -- the faults --------------------------------------------------------------------------------


def worker_pids(stack: Stack) -> list[int]:
    """The workers of ``serve --workers N``: the supervisor's spawned children (not
    multiprocessing's resource tracker)."""
    serve = stack.procs[2].pid
    found = []
    for pid in descendants(serve):
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
                found.append(pid)
    return sorted(found)


async def wait_until(ready: Callable[[], Awaitable[bool]], within: float = 30.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if await ready():
                return True
        await asyncio.sleep(0.05)
    return False


def spawn(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


async def restart_redis(chaos: Chaos, fault: Fault, down_s: float) -> None:
    """SIGTERM redis-server (it writes its AOF and exits), then the same command again."""
    stack = chaos.stack
    old = stack.procs[0]
    command = [str(a) for a in old.args]  # type: ignore[union-attr]
    client = stack.redis()

    def challenges() -> list[str]:
        found = client.scan_iter(match="stepup:{*}:challenge", count=1000)
        return [str(k) for k, _ in zip(found, range(SAMPLED_KEYS), strict=False)]

    # Challenges that exist now must exist after the restart: the AOF keeps them.
    sampled = await asyncio.to_thread(challenges)
    fault.start = chaos.now()
    old.send_signal(signal.SIGTERM)
    await asyncio.to_thread(old.wait, 30)
    fault.detail["stopped_after_s"] = round(chaos.now() - fault.start, 3)
    await asyncio.sleep(down_s)
    stack.procs[0] = await asyncio.to_thread(
        spawn, command, stack.directory / "redis-restarted.log"
    )

    async def answers() -> bool:
        return bool(await asyncio.to_thread(client.ping))

    fault.detail["answered_again"] = await wait_until(answers)
    fault.end = chaos.now()
    fault.detail["keys_after"] = await asyncio.to_thread(client.dbsize)
    kept = await asyncio.to_thread(client.exists, *sampled) if sampled else 0
    fault.detail["challenges_kept"] = f"{kept}/{len(sampled)}"


async def kill_worker(chaos: Chaos, fault: Fault) -> None:
    """SIGKILL one worker; done when the supervisor has a replacement and it answers."""
    before = worker_pids(chaos.stack)
    victim = before[0]
    fault.start = chaos.now()
    os.kill(victim, signal.SIGKILL)
    fault.detail["pid"] = victim

    async def replaced() -> bool:
        return len(set(worker_pids(chaos.stack)) - set(before)) >= 1

    fault.detail["replaced"] = await wait_until(replaced)
    fault.end = chaos.now()
    fault.detail["workers_after"] = len(worker_pids(chaos.stack))


async def inject(chaos: Chaos, faults: list[Fault], down_s: float) -> None:
    for fault in sorted(faults, key=lambda f: f.at_flows):
        while chaos.ended < fault.at_flows:
            chaos.progress.clear()
            await chaos.progress.wait()
        print(f"fault: {fault.kind} after {chaos.ended} flows", file=sys.stderr)
        if fault.kind == "redis_restart":
            await restart_redis(chaos, fault, down_s)
        else:
            await kill_worker(chaos, fault)


# -- judging -----------------------------------------------------------------------------------


@dataclass
class Verdict:
    why: list[str] = field(default_factory=list)
    doubled: bool = False
    failed_closed: list[str] = field(default_factory=list)  # where, for each such answer

    @property
    def lost(self) -> bool:
        return bool(self.why) and not self.doubled


def judge(run: Run, issuer: str, faults: list[Fault]) -> Verdict:
    """What went wrong with one step-up: nothing, when its RP got exactly its right answer
    (an answer a fault explains, followed by a new attempt, is no fault of the provider's)."""
    verdict = Verdict()

    def during(at: float, *kinds: str) -> bool:
        return any(
            f.start <= at <= f.end + OUTAGE_GRACE for f in faults if not kinds or f.kind in kinds
        )

    def in_outage(at: float) -> bool:
        return during(at, "redis_restart")

    for n, result in enumerate(run.attempts):
        why = verdict.why
        plan = result.plan
        if result.hang:
            why.append(f"hang at {result.hang}")
        if result.crashed:
            why.append(f"driver: {result.crashed}")
        why.extend(result.problems)
        codes = {a.params["code"] for a in result.answers + result.repeated if "code" in a.params}
        verdict.doubled |= len(codes) > 1
        for answer in result.answers + result.repeated:
            if answer.params.get("state") != result.state or answer.params.get("iss") != issuer:
                why.append(f"state or iss wrong: {answer.params}")
        if len(result.answers) != 1:
            if not why:
                why.append(f"{len(result.answers)} answers")
            continue
        params = result.answers[0].params
        cause = restart_cause(result)
        if cause is not None:
            at = result.answers[0].at if result.at_authorize else result.token_at
            if cause == "token_answer_lost" and result.token_retried is not None:
                at = result.token_retried  # the moment the connection went down
            verdict.failed_closed.append(cause)
            if cause == "token_answer_lost":
                explained = during(at, "worker_kill")
            elif cause == "vendor_unavailable":
                explained = True  # no injected fault: the vendor's own delay, counted apart
            else:
                explained = in_outage(at)
            if not explained:
                why.append(f"{cause} outside its fault, at {at:.2f} s")
            elif n == len(run.attempts) - 1:
                why.append(f"still {cause} after {MAX_RESTARTS} new attempts")
            if result.at_authorize:
                continue
        elif result.at_authorize:
            why.append(f"refused at /authorize: {params}")
            continue
        elif plan.applied_first == "SUCCESS":
            if "code" not in params:
                why.append(f"approved first, answered {params.get('stepup_error')}")
            elif result.token_answer != 200 or not result.claims_ok:
                why.append(f"token: {result.token_answer}, claims ok: {result.claims_ok}")
        elif (params.get("error"), params.get("stepup_error")) != (
            "access_denied",
            "face_mismatch",
        ):
            why.append(f"denied first, answered {params}")
        replay = result.replay_answer
        # A replay is refused: 400, or 503 while Redis is down (never a second id_token).
        replay_refused = replay == 400 or (
            replay is not None and replay >= 500 and in_outage(result.replay_at)
        )
        if "code" in params and cause is None and not replay_refused:
            why.append(f"a replayed code gave {replay}")
        if [a.params for a in result.repeated] != [params]:
            why.append("a reload's finish gave another answer")
        # The first webhook delivered decides; every later one changes nothing. "duplicate":
        # an earlier delivery of that very body was applied, but its answer was lost.
        if result.webhooks and result.webhooks[0] not in ("applied", "duplicate"):
            why.append(f"the first webhook: {result.webhooks[0]}")
        if any(w not in ("ignored", "duplicate") for w in result.webhooks[1:]):
            why.append(f"a later webhook: {result.webhooks[1:]}")
    verdict.doubled |= sum(r.redeemed for r in run.attempts) > 1
    return verdict


def report(
    runs: list[Run],
    chaos: Chaos,
    faults: list[Fault],
    wall: float,
    opts: argparse.Namespace,
    provider_log: dict[str, int],
) -> dict[str, Any]:
    verdicts = [judge(r, chaos.stack.issuer, faults) for r in runs]
    attempts = [a for r in runs for a in r.attempts]
    errors: Counter[str] = Counter()
    for result in attempts:
        for answer in result.answers:
            if "error" in answer.params:
                errors[f"{answer.params['error']}/{answer.params.get('stepup_error', '')}"] += 1
    problems = [
        {"flow": r.plan.index, "kind": r.plan.kind, "first": r.plan.applied_first, "why": v.why}
        for r, v in zip(runs, verdicts, strict=True)
        if v.why or v.doubled
    ]
    retries: Counter[str] = Counter()
    for key, n in chaos.retries.items():
        retries[key.split(":", 1)[0]] += n
    last = [r.attempts[-1] for r in runs]
    ended = sum(1 for a in last if a.answers and not (a.hang or a.crashed))
    codes = {a.params["code"] for r in attempts for a in r.answers if "code" in a.params}
    return {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "flows": len(runs),
        "concurrency": opts.concurrency,
        "workers": opts.workers,
        "flow_deadline_s": opts.deadline,
        "by_kind": dict(Counter(r.plan.kind for r in runs)),
        "approved_first": sum(r.plan.applied_first == "SUCCESS" for r in runs),
        "ended": ended,
        "attempts": len(attempts),
        "codes_issued": len(codes),
        "codes_redeemed": sum(r.redeemed for r in attempts),
        "error_redirects": dict(sorted(errors.items())),
        "lost": sum(v.lost for v in verdicts),
        "doubled": sum(v.doubled for v in verdicts),
        "hangs": sum(bool(a.hang) for a in attempts),
        "answers_a_fault_explains": dict(Counter(w for v in verdicts for w in v.failed_closed)),
        "webhooks": dict(Counter(w for r in attempts for w in r.webhooks)),
        "replays": dict(Counter(str(r.replay_answer) for r in attempts if r.token_answer)),
        "retries": dict(sorted(retries.items())),
        "retries_by_cause": dict(sorted(chaos.retries.items())),
        "server_errors_seen": dict(sorted(chaos.statuses.items())),
        "faults": [
            {
                "kind": f.kind,
                "after_flows": f.at_flows,
                "at_s": round(f.start, 2),
                "whole_again_at_s": round(f.end, 2),
                **f.detail,
            }
            for f in faults
        ],
        "provider_log": provider_log,
        "wall_s": round(wall, 1),
        "flows_per_s": round(len(runs) / wall, 1) if wall else None,
        "problems": problems[:20],
    }


def log_counts(stack: Stack) -> dict[str, int]:
    """What the provider's log says went wrong: tracebacks and ERROR lines."""
    text = "\n".join(
        p.read_text(errors="replace")
        for p in stack.directory.glob("*.log")
        if not p.name.startswith("redis")
    )
    return {
        "tracebacks": text.count("Traceback (most recent call last)"),
        "error_lines": sum(
            '"level": "ERROR"' in line or " ERROR " in line for line in text.splitlines()
        ),
    }


# -- a run -------------------------------------------------------------------------------------


async def drive(stack: Stack, opts: argparse.Namespace) -> dict[str, Any]:
    flows = plans(opts.flows, opts.seed)
    faults = []
    if opts.redis_restart_at is not None:
        faults.append(Fault("redis_restart", int(opts.flows * opts.redis_restart_at)))
    if opts.worker_kill_at is not None:
        faults.append(Fault("worker_kill", int(opts.flows * opts.worker_kill_at)))
    # Idle connections are dropped before the server's 5 s keep-alive timeout: with equal
    # timeouts a request sent on a connection the server is closing fails (HTTP/1.1's race,
    # which browsers retry on their own).
    connector = aiohttp.TCPConnector(limit=4 * opts.concurrency, keepalive_timeout=2.0)
    vendor_connector = aiohttp.TCPConnector(limit=opts.concurrency, keepalive_timeout=2.0)
    timeout = aiohttp.ClientTimeout(total=opts.deadline)
    async with (
        connector,
        aiohttp.ClientSession(connector=vendor_connector, timeout=timeout) as vendor,
    ):
        async with vendor.get(f"{stack.issuer}/jwks") as response:
            keys = KeySet.import_key_set(await response.json())
        chaos = Chaos(stack, keys, connector, vendor, opts.deadline)
        gate = asyncio.Semaphore(opts.concurrency)

        async def one(plan: Plan) -> Run:
            async with gate:
                if plan.index < opts.concurrency:  # not every browser in the same millisecond
                    await asyncio.sleep(RAMP_UP * plan.index / opts.concurrency)
                return await chaos.run(plan)

        injector = asyncio.create_task(inject(chaos, faults, opts.redis_down))
        runs = await asyncio.gather(*(one(p) for p in flows))
        wall = chaos.now()
        if not injector.done():
            injector.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await injector
    return report(runs, chaos, faults, wall, opts, log_counts(stack))


def fraction(text: str) -> float | None:
    if text.lower() in ("", "none", "off"):
        return None
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError("a fraction of the flows, from 0 up to 1, or 'off'")
    return value


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--flows", type=int, default=10_000)
    p.add_argument("--concurrency", type=int, default=200, help="flows in progress at once")
    p.add_argument("--workers", type=int, default=2, help="serve --workers")
    p.add_argument("--deadline", type=float, default=60.0, help="seconds a flow may take")
    p.add_argument(
        "--redis-restart-at",
        type=fraction,
        default=0.3,
        help="restart redis-server once this share of the flows ended ('off': never)",
    )
    p.add_argument(
        "--redis-down", type=float, default=1.0, help="seconds redis-server stays stopped"
    )
    p.add_argument(
        "--worker-kill-at",
        type=fraction,
        default=0.6,
        help="kill -9 one worker once this share of the flows ended ('off': never)",
    )
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--out", type=Path, help="also write the JSON here")
    p.add_argument("--logs", type=Path, help="copy the processes' logs into this folder")
    opts = p.parse_args(argv)
    if opts.worker_kill_at is not None and opts.workers < 2:
        raise SystemExit("--worker-kill-at needs a supervisor: --workers 2 or more")
    # The provider runs this checkout's code, whatever the virtualenv has installed.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "plugin"), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    # A reload's wait and the vendor's own: the provider's calls to the simulator may be slow
    # on a busy machine, which is not what this run looks at.
    stack = Stack(
        workers=opts.workers,
        subjects=opts.flows,
        overlay={"idenfy": {"timeout": 30}},
        # A folder of its own name: a clean-up of load.py's leftovers must not remove this one.
        directory=Path(tempfile.mkdtemp(prefix="stepup-chaos-")),
    )
    print(f"chaos: {opts.flows} flows, {opts.concurrency} at once", file=sys.stderr)
    stack.start()
    try:
        import uvloop

        result = uvloop.run(drive(stack, opts))
    finally:
        if opts.logs:
            opts.logs.mkdir(parents=True, exist_ok=True)
            for log in stack.directory.glob("*.log"):
                shutil.copy(log, opts.logs / log.name)
        stack.stop()
    write_report(result, opts.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
