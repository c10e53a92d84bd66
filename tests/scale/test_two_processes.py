"""Two provider processes on one Redis (issue 4, item 6): nothing lives in a process's memory.

Two real ``idenfy-stepup serve`` subprocesses share one real redis-server. The simulator runs in
the test's event loop and plays the live vendor: both providers are configured in ``live`` mode
with the simulator's URL and credentials, so neither starts a simulator of its own, and the
simulator posts every webhook to process B.

The browser starts on A (authorize, challenge page, SSE stream), the webhook lands on B, A's
push channel says "done", finish on A gives a code, the code is redeemed on B, and the
id_token verifies against A's published keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from joserfc import jwt
from joserfc.jwk import KeySet

from idenfy_stepup.settings import SimulatorSettings
from idenfy_stepup.simulator import create_simulator_app

from ..harness.redis import RedisProcess
from ..harness.rp import authorize_params, pkce, query
from ..harness.servers import TLS, free_socket, serve_in_loop, stop_process
from ..harness.settings import CLIENT_SECRET, REDIRECT_URI, SCAN_REFS, SIGNING_KEY, live_settings
from ..harness.vendor import VENDOR_AUTH

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "plugin")}
PUSH_WAIT = 10.0  # generous bound for "done" to arrive; not a timing assertion


def free_port() -> int:
    with contextlib.closing(free_socket()) as s:
        port: int = s.getsockname()[1]
    return port


@dataclass
class Provider:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path


@dataclass
class Deployment:
    a: Provider
    b: Provider
    sim_sock: socket.socket  # bound to the simulator's port, served by the test's event loop

    @property
    def simulator_url(self) -> str:
        return f"http://127.0.0.1:{self.sim_sock.getsockname()[1]}"


def write_config(path: Path, issuer_port: int, sim_port: int, redis_url: str) -> None:
    config = live_settings(
        issuer_port,
        sim_port,
        redis_url,
        api_key=VENDOR_AUTH[0],
        api_secret=VENDOR_AUTH[1],
        signing_key=SIGNING_KEY,
    )
    path.write_text(yaml.safe_dump(config))


def spawn(config: Path, port: int, log: Path) -> Provider:
    with log.open("wb") as out:
        serve = ["serve", "--config", str(config), "--port", str(port)]
        proc = subprocess.Popen(
            [sys.executable, "-m", "idenfy_stepup.cli", *serve],
            env=ENV,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return Provider(f"http://127.0.0.1:{port}", proc, log)


def wait_ready(provider: Provider) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{provider.url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if provider.proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{provider.url} did not start:\n{provider.log.read_text()}")
        time.sleep(0.1)


def stop(provider: Provider) -> None:
    stop_process(provider.proc, timeout=20)


@pytest.fixture
def deployment(tmp_path: Path, own_redis: RedisProcess) -> Iterator[Deployment]:
    providers: list[Provider] = []
    sim_sock = free_socket()  # holds the simulator's port until the test serves on it
    try:
        port_a, port_b = free_port(), free_port()
        config = tmp_path / "stepup.yaml"
        write_config(config, port_a, sim_sock.getsockname()[1], own_redis.url)
        # B runs the very same file with another --port: same issuer, keys shared via Redis.
        providers.append(spawn(config, port_a, tmp_path / "a.log"))
        providers.append(spawn(config, port_b, tmp_path / "b.log"))
        for provider in providers:
            wait_ready(provider)
        yield Deployment(providers[0], providers[1], sim_sock)
        for provider in providers:
            assert provider.proc.poll() is None, provider.log.read_text()
    finally:
        for provider in providers:
            stop(provider)
        sim_sock.close()
    for provider in providers:
        assert provider.proc.returncode == 0, provider.log.read_text()


async def wait_for_done(lines: httpx.Response) -> list[str]:
    """Read SSE blocks until one says ``event: done``; its lines."""
    block: list[str] = []
    async for line in lines.aiter_lines():
        if line == "":
            if "event: done" in block:
                return block
            block = []
            continue
        block.append(line)
    raise AssertionError("the stream ended without 'done'")


async def test_browser_on_a_webhook_on_b_code_redeemed_on_b(deployment: Deployment) -> None:
    a, b = deployment.a, deployment.b
    sim_settings = SimulatorSettings(
        host="127.0.0.1", port=deployment.sim_sock.getsockname()[1], scan_refs=SCAN_REFS
    )
    # The vendor knows only B: every webhook of this test lands on process B.
    simulator = create_simulator_app(
        sim_settings, webhook_url=f"{b.url}/webhooks/idenfy", signing_key=SIGNING_KEY
    )
    server, task = await serve_in_loop(simulator, deployment.sim_sock)
    try:
        async with httpx.AsyncClient(base_url=a.url, timeout=20, verify=TLS) as browser:
            await step_up_across_processes(deployment, browser)
    finally:
        server.should_exit = True
        await asyncio.gather(task, return_exceptions=True)


async def step_up_across_processes(deployment: Deployment, browser: httpx.AsyncClient) -> None:
    a, b = deployment.a, deployment.b
    verifier, code_challenge = pkce()
    params = authorize_params(code_challenge)
    started = await browser.get("/authorize", params=params)
    assert started.status_code == 303, started.text
    location = started.headers["location"]
    assert location.startswith("/challenge/"), location
    token = location.rsplit("/", 1)[1]
    page = await browser.get(location)
    assert page.status_code == 200 and 'id="idenfy-iframe"' in page.text, page.text
    assert deployment.simulator_url in page.text  # the iframe is the (simulated) vendor's

    async with browser.stream("GET", f"/challenge/{token}/events") as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        async with httpx.AsyncClient(timeout=30, verify=TLS) as vendor:
            outcome = asyncio.create_task(
                vendor.post(
                    f"{deployment.simulator_url}/_simulator/sessions/{token}/outcome",
                    json={"status": "SUCCESS"},
                )
            )
            async with asyncio.timeout(PUSH_WAIT):
                block = await wait_for_done(stream)
            delivered = (await outcome).json()
    assert delivered["delivered"] == 200 and delivered["attempts"] == 1, delivered
    data = next(line for line in block if line.startswith("data: "))
    assert f"/challenge/{token}/finish" in data

    async with httpx.AsyncClient(timeout=20, verify=TLS) as vendor:
        session = (
            await vendor.get(f"{deployment.simulator_url}/_simulator/sessions/{token}")
        ).json()
    # One webhook was sent, to B (the only URL the vendor knows), and B accepted it.
    assert session["status"] == "SUCCESS", session
    assert [(w["status"], w["delivered"]) for w in session["webhooks"]] == [("SUCCESS", 200)]

    finished = await browser.get(f"/challenge/{token}/finish")
    assert finished.status_code == 303, finished.text
    answer = query(finished.headers["location"])
    assert answer["state"] == params["state"] and answer["iss"] == a.url, answer
    code = answer["code"]

    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier,
    }
    async with httpx.AsyncClient(timeout=20, verify=TLS) as rp:
        tokens = await rp.post(f"{b.url}/token", data=form, auth=("shop", CLIENT_SECRET))
        assert tokens.status_code == 200, tokens.text
        # The code is spent everywhere, not just on B.
        again = await rp.post(f"{a.url}/token", data=form, auth=("shop", CLIENT_SECRET))
        assert again.status_code == 400 and again.json()["error"] == "invalid_grant", again.text
        keys_a = (await rp.get(f"{a.url}/jwks")).json()
        keys_b = (await rp.get(f"{b.url}/jwks")).json()
    assert keys_a == keys_b  # one key set, shared through Redis
    claims = jwt.decode(tokens.json()["id_token"], KeySet.import_key_set(keys_a)).claims
    assert claims["iss"] == a.url and claims["aud"] == "shop", claims
    assert claims["sub"] == "alice" and claims["nonce"] == params["nonce"], claims
