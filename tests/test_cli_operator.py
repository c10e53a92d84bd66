"""The operator's commands (`idenfy-stepup keys | subjects | locks | challenge | limits`) as
the real command line, against the real redis-server running providers use: what they print,
their exit codes, what Redis holds afterwards, and what running providers do about it."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jwt
from redis import Redis

from idenfy_stepup.oidc.keys import generate_jwk
from idenfy_stepup.store import KEYS_CHANGED

from .harness.redis import SECRETS_KEY, RedisProcess, challenge_key, lock_key, rate_key
from .harness.rp import authorize, challenge, signed_subject
from .harness.servers import Stack
from .harness.settings import TEST_ENCRYPTION_KEY, base_settings, merge
from .test_cli import run_cli, served  # noqa: F401  (served: the `serve` process fixture)

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "idenfy_stepup.cli"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "plugin")}
SEALED = {"keys": {"encryption_key": TEST_ENCRYPTION_KEY}}
LOCKING = {"challenge": {"limits": {"spoof_lockout_seconds": 600}}}

StackFactory = Callable[..., Awaitable[Stack]]


class Ran:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    def json(self) -> Any:
        return json.loads(self.out)


async def cli(*args: str) -> Ran:
    """The real command line, without blocking the loop the providers under test run in."""
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        *args,
        env=ENV,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return Ran(proc.returncode, out.decode(), err.decode())


def config(tmp_path: Path, redis_url: str, *extra: dict[str, Any]) -> str:
    """A settings file for the command line on ``redis_url`` (its ports are never used)."""
    raw = base_settings(1, 2, redis_url)
    for part in extra:
        raw = merge(raw, part)
    path = tmp_path / "stepup.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def sync_redis(url: str) -> Redis:
    return Redis.from_url(url, decode_responses=True)


async def kids(stack: Stack) -> set[str]:
    async with httpx.AsyncClient() as c:
        return {k["kid"] for k in (await c.get(f"{stack.issuer}/jwks")).json()["keys"]}


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Wait for a state (instances follow a key change on the wake-up channel)."""
    deadline = time.monotonic() + 30
    while not await check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


async def approved_id_token(stack: Stack) -> tuple[str, dict[str, Any]]:
    """Alice's approved step-up on ``stack``: the raw id_token and its header."""
    flow = await challenge(stack)
    code = (await flow.approve())["code"]
    response = await flow.redeem(code)
    assert response.status_code == 200, response.text
    raw = response.json()["id_token"]
    return raw, dict(jwt.decode(raw, await stack.jwks()).header)


async def ready(stack: Stack) -> int:
    async with httpx.AsyncClient() as c:
        return (await c.get(f"{stack.issuer}/readyz")).status_code


# -- keys -----------------------------------------------------------------------------------------
async def test_rotation_is_followed_by_two_running_instances_without_a_restart(
    stack_factory: StackFactory, redis_url: str, tmp_path: Path
) -> None:
    one = await stack_factory(settings=SEALED)
    two = await stack_factory(settings=SEALED)
    path = config(tmp_path, redis_url, SEALED)
    before = await kids(one)
    assert before == await kids(two) and len(before) == 2
    old_token, old_header = await approved_id_token(one)

    rotated = await cli("keys", "rotate", "--config", path, "--json")
    assert rotated.code == 0, rotated.err
    new = {k["kid"] for k in rotated.json()}
    assert len(new) == 2 and not new & before

    for stack in (one, two):
        await until(lambda s=stack: _has(s, before | new), "the new keys are published")
    _, header = await approved_id_token(one)
    _, header_two = await approved_id_token(two)
    assert header["kid"] in new and header_two["kid"] in new
    assert old_header["kid"] in before
    # What the replaced key signed still verifies against the JWKS the instances publish.
    assert jwt.decode(old_token, await two.jwks()).claims["sub"] == "alice"
    # ... and is still accepted as an id_token_hint naming alice.
    hinted = await authorize(one, id_token_hint=old_token, login_hint=None)
    assert hinted.token, hinted.response.headers["location"]
    # A rotation is not a split: both instances stay ready.
    assert await ready(one) == 200 and await ready(two) == 200

    listed = (await cli("keys", "list", "--config", path, "--json")).json()
    states = {k["kid"]: k["state"] for k in listed}
    assert states == {**dict.fromkeys(new, "active"), **dict.fromkeys(before, "published-only")}
    assert all(k["retire_after"] > time.time() for k in listed if k["kid"] in before)

    inside = await cli("keys", "retire", old_header["kid"], "--config", path)
    assert inside.code == 1 and "publish window" in inside.err and "--force" in inside.err
    assert old_header["kid"] in await kids(one)

    forced = await cli("keys", "retire", old_header["kid"], "--force", "--config", path)
    assert forced.code == 0, forced.err
    for stack in (one, two):
        await until(lambda s=stack: _lacks(s, old_header["kid"]), "the retired key leaves the JWKS")
    # What it signed no longer verifies once it is retired.
    refused = await authorize(one, id_token_hint=old_token, login_hint=None)
    assert refused.redirect["stepup_error"] == "invalid_id_token_hint"
    assert await ready(one) == 200 and await ready(two) == 200


async def _has(stack: Stack, wanted: set[str]) -> bool:
    return wanted <= await kids(stack)


async def _lacks(stack: Stack, kid: str) -> bool:
    return kid not in await kids(stack)


async def test_retire_refuses_the_active_key_and_an_unknown_kid(
    stack_factory: StackFactory, redis_url: str, tmp_path: Path
) -> None:
    stack = await stack_factory(settings=SEALED)
    path = config(tmp_path, redis_url, SEALED)
    active = {k["kid"] for k in (await cli("keys", "list", "--config", path, "--json")).json()}
    kid = sorted(active)[0]
    assert not kid.startswith("-"), kid  # a kid the command line takes as an argument
    refused = await cli("keys", "retire", kid, "--force", "--config", path)
    assert refused.code == 1 and "active" in refused.err and "rotate first" in refused.err, (
        refused.code,
        refused.err,
    )
    unknown = await cli("keys", "retire", "no-such-kid", "--config", path)
    assert unknown.code == 1 and "no published key" in unknown.err
    assert await kids(stack) == active


async def test_rotated_keys_stay_sealed_and_list_shows_no_key_material(
    stack_factory: StackFactory, redis_url: str, tmp_path: Path
) -> None:
    await stack_factory(settings=SEALED)
    path = config(tmp_path, redis_url, SEALED)
    assert (await cli("keys", "rotate", "--config", path)).code == 0
    with sync_redis(redis_url) as r:
        stored = r.hgetall(SECRETS_KEY)
    for field in ("jwk:RS256", "jwk:ES256", "keys:ring"):
        assert stored[field].startswith("v1."), field
        assert '"d"' not in stored[field] and "kid" not in stored[field]
    listed = await cli("keys", "list", "--config", path)
    assert listed.code == 0 and "published-only" in listed.out
    for secret in ('"d"', "private", "-----BEGIN"):
        assert secret not in listed.out
    without_key = await cli("keys", "list", "--config", config(tmp_path, redis_url))
    assert without_key.code == 2 and "keys.encryption_key" in without_key.err
    assert "Traceback" not in without_key.err


async def test_configured_keys_are_rotated_in_the_file_and_the_commands_change_nothing(
    redis_url: str, tmp_path: Path
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = tmp_path / "k1.pem"
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    signing = {"keys": {"signing": [{"kid": "k1", "alg": "RS256", "private_key_file": str(pem)}]}}
    path = config(tmp_path, redis_url, signing)
    for command in (("keys", "rotate"), ("keys", "retire", "k1")):
        ran = await cli(*command, "--config", path)
        assert ran.code == 1 and "keys.signing" in ran.err and "SIGHUP" in ran.err
    listed = await cli("keys", "list", "--config", path)
    assert listed.code == 0 and "k1" in listed.out and "settings file" in listed.out
    with sync_redis(redis_url) as r:
        assert r.hgetall(SECRETS_KEY) == {}


# -- subjects -------------------------------------------------------------------------------------
async def test_subjects_import_is_all_or_nothing_and_names_each_bad_line(
    redis_url: str, tmp_path: Path
) -> None:
    path = config(tmp_path, redis_url)
    bad = tmp_path / "bad.csv"
    bad.write_text("subject,scan_ref\ndave,SCAN-DAVE\nerin,has space\n,SCAN-X\ndave,SCAN-D2\n")
    ran = await cli("subjects", "import", str(bad), "--config", path)
    assert ran.code == 1
    assert "line 3: the scanRef" in ran.err and "line 4: the subject" in ran.err
    assert "line 5: the subject is already on line 2" in ran.err and "nothing imported" in ran.err
    with sync_redis(redis_url) as r:
        assert r.get("stepup:subject:dave") is None

    good = tmp_path / "good.csv"
    good.write_text("dave,SCAN-DAVE-0001\nerin@example.com,SCAN-ERIN-0002\n")  # no header
    dry = await cli("subjects", "import", str(good), "--dry-run", "--config", path)
    assert dry.code == 0 and "2 subject(s) valid" in dry.out
    with sync_redis(redis_url) as r:
        assert r.get("stepup:subject:dave") is None
    done = await cli("subjects", "import", str(good), "--config", path)
    assert done.code == 0 and "2 subject(s) imported" in done.out
    got = await cli("subjects", "get", "erin@example.com", "--config", path)
    assert got.code == 0 and got.out.strip() == "SCAN-ERIN-0002"


async def test_subjects_list_masks_scan_refs_unless_asked(redis_url: str, tmp_path: Path) -> None:
    path = config(tmp_path, redis_url)
    assert (await cli("subjects", "set", "dave", "SCAN-DAVE-0001", "--config", path)).code == 0
    assert (await cli("subjects", "set", "erin", "SCAN-ERIN-0002", "--config", path)).code == 0
    listed = await cli("subjects", "list", "--config", path, "--json")
    assert listed.json() == [
        {"subject": "dave", "scan_ref": "…0001"},
        {"subject": "erin", "scan_ref": "…0002"},
    ]
    assert "SCAN-DAVE" not in listed.out
    shown = await cli("subjects", "list", "--show-scan-refs", "--config", path)
    assert shown.out.splitlines() == ["dave  SCAN-DAVE-0001", "erin  SCAN-ERIN-0002"]


async def test_subjects_set_refuses_what_cannot_be_a_scan_ref(
    redis_url: str, tmp_path: Path
) -> None:
    path = config(tmp_path, redis_url)
    ran = await cli("subjects", "set", "dave", "../../x?y", "--config", path)
    assert ran.code == 2 and "scanRef" in ran.err and "Traceback" not in ran.err
    with sync_redis(redis_url) as r:
        assert r.get("stepup:subject:dave") is None


# -- locks, limits, challenges ---------------------------------------------------------------------
async def test_a_locked_subject_is_listed_by_name_and_cleared_with_its_failures(
    stack_factory: StackFactory, redis_url: str, tmp_path: Path
) -> None:
    stack = await stack_factory(settings=LOCKING)
    path = config(tmp_path, redis_url, LOCKING)
    flow = await authorize(stack, **signed_subject(stack))
    delivered = await stack.outcome(flow.token, "FAILED", "FAKE_FACE")
    assert delivered.json()["delivered"] == 200
    with sync_redis(redis_url) as r:
        assert r.ttl(lock_key("alice")) > 0

    listed = await cli("locks", "list", "--config", path, "--json")
    assert [entry["subject"] for entry in listed.json()] == ["alice"]
    limits = (await cli("limits", "show", "--subject", "alice", "--config", path, "--json")).json()
    assert limits["locked_seconds"] > 0
    assert limits["counters"][0]["limit"] == "failures_per_subject"
    assert limits["counters"][0]["count"] == 1

    cleared = await cli("locks", "clear", "alice", "--reset-failures", "--config", path)
    assert cleared.code == 0
    assert cleared.out.splitlines() == ["alice: lock lifted", "alice: failed checks reset"]
    with sync_redis(redis_url) as r:
        assert r.exists(lock_key("alice")) == 0
        assert r.hget(rate_key("alice"), "fs") is None
    again = await cli("locks", "clear", "alice", "--config", path)
    assert again.out.strip() == "alice: was not locked"
    # The person can step up again at once.
    assert (await authorize(stack, **signed_subject(stack))).token


async def test_limits_show_an_address_by_the_identity_the_provider_counts(
    stack_factory: StackFactory, redis_url: str, tmp_path: Path
) -> None:
    stack = await stack_factory()
    path = config(tmp_path, redis_url)
    flow = await challenge(stack)
    await stack.outcome(flow.token, "FAILED", "FACE_MISMATCH")
    shown = await cli("limits", "show", "--address", "127.0.0.1", "--config", path, "--json")
    data = shown.json()
    assert data["address"] == "127.0.0.1" and data["open_challenges"] == 0
    counts = {c["limit"]: c["count"] for c in data["counters"]}
    assert counts == {"failures_per_ip": 1, "token_failures_per_ip": 0}
    v6 = await cli("limits", "show", "--address", "2001:db8::1", "--config", path)
    assert v6.code == 0 and v6.out.startswith("address 2001:db8::/64 (its /64)")
    with sync_redis(redis_url) as r:
        assert r.hget(rate_key("127.0.0.1"), "fi") == "1"


async def test_challenge_show_tells_state_and_times_but_no_secret(
    stack_factory: StackFactory, redis_url: str, tmp_path: Path
) -> None:
    stack = await stack_factory()
    path = config(tmp_path, redis_url)
    flow = await challenge(stack)
    await stack.outcome(flow.token, "FAILED", "FACE_TOO_CLOSE")
    ran = await cli("challenge", "show", flow.token, "--config", path, "--json")
    assert ran.code == 0, ran.err
    view = ran.json()
    assert view["state"] == "DENIED" and view["outcome"] == "FACE_TOO_CLOSE"
    assert view["client_id"] == "shop" and view["subject"] == "alice"
    assert view["attempt"] == 1 and view["retryable"] is True and view["webhook_received"]
    assert view["expires_at"] > time.time() and view["denied_at"] <= time.time()
    assert (view["type"], view["method"]) == ("AUTHENTICATION", "FACE_MATCHING")
    with sync_redis(redis_url) as r:
        record = r.hgetall(challenge_key(flow.token))
    parts = (record[f"q{n}"] for n in range(1, int(record["qn"]) + 1))  # the request's JSON
    scan_ref = json.loads("".join(parts))["k"]
    assert scan_ref == "SCAN-ALICE"
    for secret in (record["binding"], scan_ref, record["webhook_id"], flow.token):
        assert secret not in ran.out
    assert view["token_prefix"] == flow.token[:6]


async def test_challenge_show_never_echoes_the_token_it_was_given(
    redis_url: str, tmp_path: Path
) -> None:
    path = config(tmp_path, redis_url)
    unknown = await cli("challenge", "show", "UnknownToken1234567890", "--config", path)
    assert unknown.code == 1 and "not in Redis" in unknown.err
    assert "UnknownToken1234567890" not in unknown.err + unknown.out
    short = await cli("challenge", "show", "abc", "--config", path)
    assert short.code == 1 and "abc" not in short.err + short.out
    bad = await cli("challenge", "show", "not a token/secret", "--config", path)
    assert bad.code == 2 and "not a challenge token" in bad.err
    assert "secret" not in bad.err


async def test_operator_commands_say_redis_is_unreachable_with_exit_code_3(
    tmp_path: Path,
) -> None:
    gone = RedisProcess()  # never started: nothing listens on its port
    path = config(tmp_path, gone.url)
    for command in (("keys", "list"), ("locks", "list"), ("subjects", "list")):
        ran = await cli(*command, "--config", path)
        assert ran.code == 3, (command, ran.err)
        assert "is unreachable" in ran.err and "Traceback" not in ran.err
    usage = await cli("limits", "show", "--config", path)
    assert usage.code == 2 and "--subject" in usage.err


async def test_a_key_written_to_redis_without_the_encryption_key_is_never_published(
    stack_factory: StackFactory, redis_url: str
) -> None:
    stack = await stack_factory(settings=SEALED)
    before = await kids(stack)
    intruder = json.loads(generate_jwk("RS256"))
    public = {k: v for k, v in intruder.items() if k not in ("d", "p", "q", "dp", "dq", "qi")}
    ring = {"passive": [{"jwk": public, "replaced_at": 0, "retire_after": 0}], "created": {}}
    with sync_redis(redis_url) as r:
        r.hset(SECRETS_KEY, "keys:ring", json.dumps(ring))
        r.hincrby(SECRETS_KEY, "keys:version", 1)
        r.publish("stepup:events", KEYS_CHANGED)
    # /readyz follows a newer key version before it compares: once it has answered, the
    # instance has looked at what was written, and refused it.
    assert await ready(stack) == 200
    assert await kids(stack) == before and intruder["kid"] not in before


def test_a_served_provider_publishes_rotated_keys_without_a_restart(
    served: tuple[str, str],  # noqa: F811  (the fixture imported from test_cli)
    tmp_path: Path,
) -> None:
    """`idenfy-stepup serve` as its own process, with its embedded Redis, which the command
    shares through the same data folder."""
    issuer, _ = served
    config_file = str(tmp_path / "minimal.yaml")  # what `served` started with

    def published() -> set[str]:
        return {k["kid"] for k in httpx.get(f"{issuer}/jwks").json()["keys"]}

    before = published()
    rotated = run_cli("keys", "rotate", "--config", config_file, "--json")
    assert rotated.returncode == 0, rotated.stderr
    new = {k["kid"] for k in json.loads(rotated.stdout)}
    deadline = time.monotonic() + 30
    while published() != before | new:
        assert time.monotonic() < deadline, "the served provider publishes the rotated keys"
        time.sleep(0.05)
    assert httpx.get(f"{issuer}/readyz").status_code == 200
