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
from joserfc.jwk import KeySet
from redis import Redis

from idenfy_stepup.store import Store, tag

from .harness.redis import SECRETS_KEY, RedisProcess, challenge_key, lock_key, rate_key
from .harness.rp import authorize, challenge, signed_subject
from .harness.servers import Stack
from .harness.settings import TEST_ENCRYPTION_KEY, base_settings, merge

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
        await until(
            lambda s=stack: _lacks(s, old_header["kid"]), "the retired key leaves the JWKS"
        )
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
    refused = await cli("keys", "retire", kid, "--force", "--config", path)
    assert refused.code == 1 and "active" in refused.err and "rotate first" in refused.err
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
