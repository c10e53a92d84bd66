"""Generated signing keys and the cookie secret: encrypted in Redis, never silently replaced,
and a split JWKS (two instances signing with different generated keys) fails readiness."""

from __future__ import annotations

import base64
import json
import logging
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis import Redis

from idenfy_stepup.boot.sealed_secrets import Sealer, kek_id
from idenfy_stepup.boot.startup import StartupError

from .harness.redis import SECRETS_KEY, RedisProcess
from .harness.rp import authorize, redeem_code
from .harness.servers import TLS, Stack, running_stack
from .test_startup_errors import CLI, ENV, serve_once, stack_config

KEK_A = "a1" * 32
KEK_B = base64.urlsafe_b64encode(b"\xb2" * 32).rstrip(b"=").decode()  # base64url works too
FIELDS = (b"jwk:RS256", b"jwk:ES256", b"cookie")


def with_kek(kek: str | None, previous: str | None = None) -> dict[str, Any]:
    keys: dict[str, Any] = {"encryption_key": kek}
    if previous is not None:
        keys["encryption_key_previous"] = previous
    return {"keys": keys}


def stored(redis: Redis) -> dict[bytes, bytes]:
    return {k: v for k, v in redis.hgetall(SECRETS_KEY).items() if k in FIELDS}


async def get_json(stack: Stack, path: str) -> tuple[int, Any]:
    async with httpx.AsyncClient(verify=TLS, timeout=20) as c:
        response = await c.get(f"{stack.issuer}{path}")
    return response.status_code, response.json()


async def test_generated_secrets_are_stored_encrypted_and_still_sign(
    own_redis: RedisProcess,
) -> None:
    async with running_stack(own_redis.url, settings=with_kek(KEK_A)) as stack:
        flow = await authorize(stack, login_hint="alice")
        result = await flow.approve()
        token = await redeem_code(stack, result["code"], verifier=flow.verifier)
        assert token.status_code == 200 and "id_token" in token.json()
        _, jwks = await get_json(stack, "/jwks")
    with own_redis.client() as r:
        values = stored(r)
    assert sorted(values) == sorted(FIELDS)
    sealer = Sealer(bytes.fromhex(KEK_A))
    for field, value in values.items():
        parts = value.decode().split(".")
        assert parts[:2] == ["v1", kek_id(bytes.fromhex(KEK_A))]
        assert b'"d"' not in value and b"{" not in value  # no JWK, no private exponent
        plain, again = sealer.open(field.decode(), value.decode())
        assert not again and plain
    published = {k["kid"] for k in jwks["keys"]}
    for alg in ("RS256", "ES256"):
        plain, _ = sealer.open(f"jwk:{alg}", values[f"jwk:{alg}".encode()].decode())
        assert json.loads(plain)["kid"] in published


def test_a_ciphertext_moved_to_another_field_does_not_decrypt() -> None:
    sealer = Sealer(bytes.fromhex(KEK_A))
    sealed = sealer.seal("jwk:RS256", '{"kty":"RSA"}')
    assert sealer.open("jwk:RS256", sealed) == ('{"kty":"RSA"}', False)
    with pytest.raises(StartupError, match=r"^keys\.encryption_key: .*jwk:ES256"):
        sealer.open("jwk:ES256", sealed)
    tampered = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    with pytest.raises(StartupError, match=r"^keys\.encryption_key: .*does not decrypt"):
        sealer.open("jwk:RS256", tampered)


async def test_plain_text_secrets_of_an_earlier_version_are_encrypted_in_place(
    own_redis: RedisProcess,
) -> None:
    async with running_stack(own_redis.url) as before:  # no key: plain text, as until now
        _, jwks_before = await get_json(before, "/jwks")
    with own_redis.client() as r:
        assert all(v.startswith(b"{") for k, v in stored(r).items() if k != b"cookie")
    async with running_stack(own_redis.url, settings=with_kek(KEK_A)) as after:
        _, jwks_after = await get_json(after, "/jwks")
    assert jwks_after == jwks_before  # same keys: relying parties notice nothing
    with own_redis.client() as r:
        assert all(v.startswith(b"v1.") for v in stored(r).values())


async def test_key_encryption_key_rotation_keeps_the_keys_and_reencrypts(
    own_redis: RedisProcess,
) -> None:
    async with running_stack(own_redis.url, settings=with_kek(KEK_A)) as first:
        _, jwks_first = await get_json(first, "/jwks")
    async with running_stack(own_redis.url, settings=with_kek(KEK_B, KEK_A)) as rotated:
        _, jwks_rotated = await get_json(rotated, "/jwks")
    assert jwks_rotated == jwks_first
    new_id = kek_id(base64.urlsafe_b64decode(KEK_B + "="))
    with own_redis.client() as r:
        assert all(v.decode().split(".")[1] == new_id for v in stored(r).values())


async def test_a_wrong_key_encryption_key_is_a_startup_error_not_new_keys(
    own_redis: RedisProcess, tmp_path: Path
) -> None:
    async with running_stack(own_redis.url, settings=with_kek(KEK_A)):
        pass
    with own_redis.client() as r:
        before = stored(r)
    config = stack_config(tmp_path, own_redis.url, keys={"encryption_key": KEK_B})
    code, stderr = serve_once(config)
    assert code == 2, stderr
    assert stderr.strip().splitlines() == [
        "keys.encryption_key: the stored secret jwk:RS256 in Redis was encrypted with another "
        f"key (key id {kek_id(bytes.fromhex(KEK_A))})"
    ]
    with own_redis.client() as r:
        assert stored(r) == before  # nothing regenerated, nothing overwritten


async def test_split_jwks_after_redis_lost_its_data_fails_readiness_of_the_old_instance(
    own_redis: RedisProcess, caplog: pytest.LogCaptureFixture
) -> None:
    settings = with_kek(KEK_A)
    async with running_stack(own_redis.url, settings=settings) as a:
        assert (await get_json(a, "/readyz"))[0] == 200
        with own_redis.client() as r:
            r.flushall()  # Redis lost its data (restarted without persistence)
        caplog.set_level(logging.ERROR, logger="idenfy_stepup")
        async with running_stack(own_redis.url, settings=settings) as b:
            status, body = await get_json(a, "/readyz")
            assert status == 503, body
            assert body["status"] == "unavailable" and "restart" in body["reason"]
            assert "jwk:RS256" in body["fields"]
            assert (await get_json(b, "/readyz"))[0] == 200
            assert (await get_json(a, "/jwks"))[1] != (await get_json(b, "/jwks"))[1]
            split = [r for r in caplog.records if getattr(r, "event", "") == "secrets.split"]
            assert len(split) == 1 and split[0].levelno == logging.ERROR
            held = a.servers[0][0].config.app.state.runtime.shared.held
            logged = split[0].getMessage() + str(vars(split[0]))
            assert not any(value in logged for value in held.values())
            # The operator restarts A: it adopts what Redis holds.
            await a.stop()
            async with running_stack(own_redis.url, settings=settings) as a2:
                assert (await get_json(a2, "/readyz"))[0] == 200
                assert (await get_json(a2, "/jwks"))[1] == (await get_json(b, "/jwks"))[1]


async def test_a_check_after_redis_lost_its_data_writes_the_keys_back(
    own_redis: RedisProcess,
) -> None:
    settings = with_kek(KEK_A)
    async with running_stack(own_redis.url, settings=settings) as a:
        with own_redis.client() as r:
            r.flushall()
        assert (await get_json(a, "/readyz"))[0] == 200  # A writes its secrets back
        async with running_stack(own_redis.url, settings=settings) as b:
            assert (await get_json(b, "/jwks"))[1] == (await get_json(a, "/jwks"))[1]
            assert (await get_json(a, "/readyz"))[0] == 200


def test_live_mode_without_an_encryption_key_is_refused(tmp_path: Path) -> None:
    config = stack_config(tmp_path, "redis://127.0.0.1:1/0", live=True)
    checked = subprocess.run(
        [*CLI, "check-config", str(config)], capture_output=True, text=True, env=ENV, timeout=60
    )
    assert checked.returncode == 2
    assert "error: keys.encryption_key: required in idenfy.mode live" in checked.stderr
    code, stderr = serve_once(config)
    assert code == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("keys.encryption_key: required")
    assert "keys.signing is empty" in lines[0] and "cookies.secret is not set" in lines[0]
