"""The provider and the iDenfy simulator on real loopback ports.

Nothing is faked: the provider talks to the simulator over HTTP, the simulator sends signed
webhooks back over HTTP, and state lives in a real redis-server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from joserfc.jwk import KeySet

from idenfy_stepup.app import create_app
from idenfy_stepup.settings import Settings, parse_settings
from idenfy_stepup.simulator import create_simulator_app

from .settings import base_settings, merge

# httpx builds a TLS context (loading the CA bundle, ~40 ms) for every client it creates; the
# test clients share this one, which is the same default context built once.
TLS = httpx.create_ssl_context()


def free_socket(host: str = "127.0.0.1") -> socket.socket:
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets that say they are TCP; with
    # proto 0 every request on a kept-alive connection waits ~40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    return sock


async def serve_in_loop(app: Any, sock: socket.socket) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="on", proxy_headers=False
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    deadline = time.monotonic() + 20
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("server stopped during start-up")
        if time.monotonic() > deadline:
            raise RuntimeError("server did not start")
        await asyncio.sleep(0.01)
    return server, task


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """SIGTERM; SIGKILL when it has not exited within ``timeout`` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@dataclass
class Stack:
    settings: Settings
    servers: list[tuple[uvicorn.Server, asyncio.Task[None]]] = field(default_factory=list)
    clients: list[httpx.AsyncClient] = field(default_factory=list)

    @property
    def issuer(self) -> str:
        return self.settings.issuer

    @property
    def simulator_url(self) -> str:
        return self.settings.idenfy.simulator.base_url()

    def browser(self) -> httpx.AsyncClient:
        client = httpx.AsyncClient(
            base_url=self.issuer, follow_redirects=False, timeout=20, verify=TLS
        )
        self.clients.append(client)
        return client

    async def stop(self) -> None:
        for client in self.clients:
            await client.aclose()
        for server, _ in self.servers:
            server.should_exit = True
        await asyncio.gather(*(task for _, task in self.servers), return_exceptions=True)

    async def outcome(
        self, token: str, status: str, fail_reason: str | None = None, **extra: Any
    ) -> httpx.Response:
        """The simulator ends the session ``token`` with ``status`` and sends its webhook."""
        body: dict[str, Any] = {"status": status, **extra}
        if fail_reason is not None:
            body["failReason"] = fail_reason
        url = f"{self.simulator_url}/_simulator/sessions/{token}/outcome"
        async with httpx.AsyncClient(timeout=30, verify=TLS) as c:
            return await c.post(url, json=body)

    async def jwks(self) -> KeySet:
        async with httpx.AsyncClient(verify=TLS) as c:
            data = (await c.get(f"{self.issuer}/jwks")).json()
        return KeySet.import_key_set(data)


async def start_stack(
    redis_url: str, *, settings: dict[str, Any] | None = None, simulator: bool = True
) -> Stack:
    """The provider (and, unless ``simulator=False``, the simulator) with ``settings`` laid
    over the suite's base settings."""
    provider_sock, sim_sock = free_socket(), free_socket()
    raw = base_settings(provider_sock.getsockname()[1], sim_sock.getsockname()[1], redis_url)
    parsed = parse_settings(merge(raw, settings or {}))
    stack = Stack(parsed)
    stack.servers.append(await serve_in_loop(create_app(parsed), provider_sock))
    if simulator:
        sim = parsed.idenfy.simulator
        key = parsed.idenfy.webhook_signing_key
        app = create_simulator_app(
            sim,
            webhook_url=f"{parsed.issuer}/webhooks/idenfy",
            signing_key=key.get_secret_value() if key else None,
        )
        stack.servers.append(await serve_in_loop(app, sim_sock))
    else:
        sim_sock.close()
    return stack


class StackPool:
    """Stacks shared by the tests of one module: one per distinct configuration.

    Starting a stack costs a few hundred milliseconds; the parametrized rows of the error
    table and the invariants reuse one per configuration instead. Use it from a module-scoped
    fixture whose tests run in the module's event loop (``loop_scope="module"``).
    """

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self._stacks: dict[str, Stack] = {}

    async def get(self, *, settings: dict[str, Any] | None = None, simulator: bool = True) -> Stack:
        key = json.dumps([settings or {}, simulator], sort_keys=True)
        if key not in self._stacks:
            self._stacks[key] = await start_stack(
                self.redis_url, settings=settings, simulator=simulator
            )
        return self._stacks[key]

    async def fresh(
        self, *, settings: dict[str, Any] | None = None, simulator: bool = True
    ) -> Stack:
        """A stack of its own (e.g. for a test that counts vendor sessions or stops a server)."""
        key = f"fresh-{len(self._stacks)}"
        self._stacks[key] = await start_stack(
            self.redis_url, settings=settings, simulator=simulator
        )
        return self._stacks[key]

    async def stop(self) -> None:
        await asyncio.gather(*(stack.stop() for stack in self._stacks.values()))
        self._stacks.clear()


@contextlib.asynccontextmanager
async def running_stack(redis_url: str, **kwargs: Any) -> AsyncIterator[Stack]:
    """A stack for the duration of a ``with`` block (e.g. on a redis-server the test owns)."""
    stack = await start_stack(redis_url, **kwargs)
    try:
        yield stack
    finally:
        await stack.stop()
