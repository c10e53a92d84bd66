"""``WireRedis`` (store/wire.py) against real redis-server processes.

Nothing of ours is faked: every test talks to a real redis-server (over TCP or a Unix socket),
stops it, restarts it or freezes it with SIGSTOP. The only stand-in is a loopback server that
accepts connections and never answers, for the read and handshake timeouts.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import ipaddress
import os
import shutil
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from redis import exceptions as rexc
from redis.asyncio import Redis as AsyncRedis

from idenfy_stepup.stepup.records import StepUpRequest
from idenfy_stepup.store import (
    FinishMode,
    HookVerdict,
    RedisPyBackend,
    Store,
    StoreUnavailable,
    VerdictKind,
    WireBackend,
    WireRedis,
    code_for,
    new_secret_for,
    tag,
)
from idenfy_stepup.store import wire as store_wire

from .harness.redis import RedisProcess, request_parts
from .harness.servers import free_socket

TIMEOUT = 0.5  # the short socket timeout of the timeout tests
SCRIPT = "return {KEYS[1], ARGV[1], redis.call('INCR', KEYS[1])}"
SCRIPT_SHA = hashlib.sha1(SCRIPT.encode()).hexdigest()


# -- servers --------------------------------------------------------------------------------------
@contextlib.contextmanager
def running(*extra: str, unix: bool = False) -> Iterator[RedisProcess]:
    """A redis-server of the test's own (with a Unix socket in its folder when ``unix``)."""
    proc = RedisProcess(*extra)
    if unix:
        proc.extra = (*extra, "--unixsocket", str(proc.dir / "r.sock"))
    proc.start()
    try:
        yield proc
    finally:
        if proc.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                proc.proc.send_signal(signal.SIGCONT)  # a stopped server cannot terminate
        proc.stop()
        shutil.rmtree(proc.dir, ignore_errors=True)


def sock_of(proc: RedisProcess) -> Path:
    return proc.dir / "r.sock"


def url_db(proc: RedisProcess, db: int) -> str:
    return f"redis://127.0.0.1:{proc.port}/{db}"


@pytest.fixture(scope="module")
def server() -> Iterator[RedisProcess]:
    """The module's shared server, on a loopback port and a Unix socket."""
    with running(unix=True) as proc:
        yield proc


@pytest.fixture
def r(server: RedisProcess) -> Iterator[Redis]:
    client = server.client()
    client.flushall()
    client.script_flush()
    yield client
    kill_other_clients(client)
    client.close()


@pytest.fixture(scope="module")
def auth_server() -> Iterator[RedisProcess]:
    """A server with a password for the default user and an ACL user ``stepup`` / ``pw``."""
    with running() as proc:
        with proc.client() as admin:
            admin.execute_command("ACL", "SETUSER", "stepup", "on", ">pw", "~*", "&*", "+@all")
            admin.config_set("requirepass", "s3cret")
        yield proc


@pytest.fixture
def r_auth(auth_server: RedisProcess) -> Iterator[Redis]:
    client = Redis(port=auth_server.port, password="s3cret")
    client.flushall()
    yield client
    kill_other_clients(client)
    client.close()


def wire_for(url: str, timeout: float = 2.0) -> WireRedis:
    wire = WireRedis.for_url(url, timeout)
    assert wire is not None, url
    return wire


@pytest.fixture
async def wire(r: Redis, server: RedisProcess) -> AsyncIterator[WireRedis]:
    client = wire_for(server.url)
    yield client
    await client.aclose()


def kill_other_clients(client: Redis) -> None:
    """Close every connection but ``client``'s own: one a client left behind would be
    reported as an unclosed transport by a later test (warnings are errors)."""
    client.client_kill_filter(_type="normal", skipme=True)


async def settle() -> None:
    """Let the event loop see the ends of connections a server just closed."""
    for _ in range(5):
        await asyncio.sleep(0.01)


async def wait_blocked(client: Redis, count: int = 1) -> None:
    """Until ``count`` clients sit in a blocking command on the server."""
    for _ in range(1000):
        if client.info("clients")["blocked_clients"] == count:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"no {count} blocked clients on the server")


def client_count(client: Redis) -> int:
    return int(client.info("clients")["connected_clients"])


async def until_count(client: Redis, expected: int, seconds: float = 1.0) -> int:
    """The connected clients once they reach ``expected`` (or whatever is there at the end)."""
    deadline = time.monotonic() + seconds
    for _ in range(1000):
        count = client_count(client)
        if count == expected or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.02)
    return count


class SilentServer:
    """A loopback TCP server that accepts connections and never answers."""

    def __init__(self) -> None:
        self.conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> SilentServer:
        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.conns.append((reader, writer))

        self.server = await asyncio.start_server(accept, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for _, writer in self.conns:
            writer.close()
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()
        await settle()  # the client sees its connections end before the loop goes away

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    async def closed_by_client(self, index: int) -> bool:
        """Whether the client ended accepted connection ``index`` (EOF or reset)."""
        reader, _ = self.conns[index]
        try:
            async with asyncio.timeout(0.5):
                while await reader.read(65536):
                    pass
        except TimeoutError:
            return False
        except ConnectionError:
            return True
        return True


# -- basic commands -------------------------------------------------------------------------------
@pytest.mark.parametrize("transport", ["tcp", "unix"])
async def test_replies_of_every_kind(r: Redis, server: RedisProcess, transport: str) -> None:
    url = server.url if transport == "tcp" else f"unix://{sock_of(server)}"
    wire = wire_for(url)
    try:
        info = await wire.execute("CLIENT", "INFO")
        assert (b"r.sock" in info) == (transport == "unix"), info
        assert await wire.execute("PING") == b"PONG"
        assert await wire.execute("SET", "k", "v") == b"OK"
        assert await wire.execute("SET", "k", "other", "NX") is None
        assert await wire.execute("GET", "k") == b"v"
        assert await wire.execute("GET", "missing") is None
        assert await wire.execute("HSET", "h", "a", 1, "b", 2.5) == 2
        assert await wire.execute("HMGET", "h", "a", "missing", "b") == [b"1", None, b"2.5"]
        assert await wire.execute("HMGET", "nohash", "a", "b") == [None, None]
        assert await wire.execute("INCR", "n") == 1
        assert await wire.execute("INCRBY", "n", 41) == 42
        assert await wire.execute("RPUSH", "l", "x", b"y") == 2
        assert await wire.execute("LRANGE", "l", 0, -1) == [b"x", b"y"]
        assert await wire.execute("LRANGE", "nolist", 0, -1) == []
        binary = bytes(range(256)) * 4
        assert await wire.execute("SET", "bin", binary) == b"OK"
        assert await wire.execute("GET", "bin") == binary
        big = os.urandom(1 << 20)  # a reply in many reads
        assert await wire.execute("SET", "big", big) == b"OK"
        assert await wire.execute("GET", "big") == big
        # The server saw the same writes.
        assert r.get("k") == b"v"
        assert r.hgetall("h") == {b"a": b"1", b"b": b"2.5"}
        assert r.get("big") == big

        # An error reply fails its own command only, and the connection stays usable.
        with pytest.raises(rexc.ResponseError, match="WRONGTYPE"):
            await wire.execute("HGET", "k", "f")
        with pytest.raises(rexc.ResponseError, match="unknown command"):
            await wire.execute("NOSUCHCOMMAND")
        replies = await asyncio.gather(
            wire.execute("GET", "k"),
            wire.execute("HGET", "k", "f"),
            wire.execute("INCR", "n"),
            return_exceptions=True,
        )
        assert replies[0] == b"v"
        assert isinstance(replies[1], rexc.ResponseError)
        assert replies[2] == 43
        # Still the first connection: errors do not cost it.
        assert await wire.execute("CLIENT", "ID") == int(info.split(b"id=")[1].split()[0])
    finally:
        await wire.aclose()


async def test_many_concurrent_commands_one_connection_in_order(
    r: Redis, server: RedisProcess
) -> None:
    r.mset({f"k{i}": f"v{i}" for i in range(500)})
    wire = wire_for(server.url)
    try:
        before = r.info("stats")
        calls = []
        for i in range(500):  # issued from cold: every call waits for the one connection
            calls += [
                wire.execute("INCR", "n"),
                wire.execute("GET", f"k{i}"),
                wire.execute("CLIENT", "ID"),
            ]
        replies = await asyncio.gather(*calls)
        after = r.info("stats")
        assert replies[0::3] == list(range(1, 501))
        assert replies[1::3] == [f"v{i}".encode() for i in range(500)]
        ids = set(replies[2::3])
        assert len(ids) == 1
        assert after["total_connections_received"] - before["total_connections_received"] == 1
        # Auto-pipelining: 1500 commands reach the server in a handful of reads, not 1500.
        assert after["total_reads_processed"] - before["total_reads_processed"] < 50
        listed = [c for c in r.client_list() if int(c["id"]) in ids]
        assert len(listed) == 1
        assert r.get("n") == b"500"
    finally:
        await wire.aclose()


# -- authentication and database ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("userinfo", "user"),
    [(":s3cret@", b"default"), ("stepup:pw@", b"stepup")],
    ids=["password", "username-and-password"],
)
async def test_auth(r_auth: Redis, auth_server: RedisProcess, userinfo: str, user: bytes) -> None:
    wire = wire_for(f"redis://{userinfo}127.0.0.1:{auth_server.port}/0")
    try:
        assert await wire.execute("ACL", "WHOAMI") == user
        assert await wire.execute("SET", "k", user) == b"OK"
        assert r_auth.get("k") == user
    finally:
        await wire.aclose()


@pytest.mark.parametrize(
    "userinfo",
    [":wrong@", "stepup:wrong@", "nobody:pw@", ""],
    ids=["password", "acl", "user", "none"],
)
async def test_wrong_or_missing_credentials_fail_fast(
    r_auth: Redis, auth_server: RedisProcess, userinfo: str
) -> None:
    wire = wire_for(f"redis://{userinfo}127.0.0.1:{auth_server.port}/0", timeout=5)
    try:
        for _ in range(3):  # every command fails the same way, none hangs
            started = time.monotonic()
            with pytest.raises(rexc.RedisError, match=r"^(WRONGPASS|NOAUTH) "):
                await wire.execute("SET", "k", "v")
            assert time.monotonic() - started < 1
        assert r_auth.get("k") is None
    finally:
        await wire.aclose()
        kill_other_clients(r_auth)
        await settle()


async def test_failed_auth_leaves_no_connection_open(
    r_auth: Redis, auth_server: RedisProcess
) -> None:
    baseline = client_count(r_auth)
    wire = wire_for(f"redis://:wrong@127.0.0.1:{auth_server.port}/0")
    try:
        for _ in range(3):
            with pytest.raises(rexc.RedisError, match="WRONGPASS"):
                await wire.execute("PING")
        left = await until_count(r_auth, baseline, seconds=0.5)
    finally:
        await wire.aclose()
        kill_other_clients(r_auth)
        await settle()
    assert left == baseline, f"{left - baseline} connections left open by failed handshakes"


@pytest.mark.parametrize("transport", ["tcp", "unix"])
async def test_select_db_from_url(r: Redis, server: RedisProcess, transport: str) -> None:
    url = url_db(server, 3) if transport == "tcp" else f"unix://{sock_of(server)}?db=3"
    wire = wire_for(url)
    try:
        assert await wire.execute("SET", "in-three", transport) == b"OK"
        assert b" db=3 " in await wire.execute("CLIENT", "INFO")
    finally:
        await wire.aclose()
    with Redis(port=server.port, db=3) as r3:
        assert r3.get("in-three") == transport.encode()
    assert r.get("in-three") is None  # not in db 0


async def test_select_of_a_missing_db_is_an_error(r: Redis, server: RedisProcess) -> None:
    wire = wire_for(url_db(server, 99))
    try:
        with pytest.raises(rexc.ResponseError, match="DB index is out of range"):
            await wire.execute("SET", "k", "v")
    finally:
        await wire.aclose()
        kill_other_clients(r)
        await settle()


# -- for_url --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel://127.0.0.1:26379/mymaster/0",
        "rediss+sentinel://127.0.0.1:26379/mymaster/0",
        "redis+cluster://127.0.0.1:7000/0",
        "http://127.0.0.1:6379/0",
        "redis://127.0.0.1:6379/0?socket_timeout=1",
        "redis://127.0.0.1:6379/0?protocol=3",
        "redis://127.0.0.1:6379/0?health_check_interval=5",
        "redis://127.0.0.1:6379/0?foo=bar",
        "unix:///tmp/r.sock?client_name=x",
    ],
)
def test_for_url_declines(url: str) -> None:
    assert WireRedis.for_url(url, 1.0) is None


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "redis://localhost",
        "redis://user:pass@127.0.0.1:6379/3",
        "redis://127.0.0.1:6379?db=2",
        "rediss://127.0.0.1:6380/0?ssl_cert_reqs=none",
        "unix:///tmp/r.sock",
        "unix:///tmp/r.sock?db=2",
    ],
)
def test_for_url_serves_single_servers(url: str) -> None:
    assert isinstance(WireRedis.for_url(url, 1.0), WireRedis)


# -- scripts --------------------------------------------------------------------------------------
async def test_evalsha_loads_the_script_on_noscript(r: Redis, wire: WireRedis) -> None:
    assert r.script_exists(SCRIPT_SHA) == [False]
    # A bare EVALSHA of an unknown script is a NoScriptError...
    with pytest.raises(rexc.NoScriptError):
        await wire.execute("EVALSHA", SCRIPT_SHA, 1, "c", "x")
    # ...which evalsha answers by loading it: first use, then again, then after a flush.
    assert await wire.evalsha(SCRIPT_SHA, SCRIPT, ["c"], ["x"]) == [b"c", b"x", 1]
    assert r.script_exists(SCRIPT_SHA) == [True]
    assert await wire.evalsha(SCRIPT_SHA, SCRIPT, ["c"], [b"y"]) == [b"c", b"y", 2]
    r.script_flush()
    assert await wire.evalsha(SCRIPT_SHA, SCRIPT, ["c"], [3]) == [b"c", b"3", 3]
    # Concurrent callers after a flush each get their own reply.
    r.script_flush()
    replies = await asyncio.gather(
        *(wire.evalsha(SCRIPT_SHA, SCRIPT, [f"c{i % 2}"], [i]) for i in range(20))
    )
    assert [reply[1] for reply in replies] == [str(i).encode() for i in range(20)]
    assert sorted(reply[2] for reply in replies if reply[0] == b"c0") == list(range(1, 11))
    assert r.get("c") == b"3"
    # A script error is a ResponseError, and the connection goes on.
    bad = "return redis.call('HGET', KEYS[1], 'f')"
    bad_sha = hashlib.sha1(bad.encode()).hexdigest()
    with pytest.raises(rexc.ResponseError, match="WRONGTYPE"):
        await wire.evalsha(bad_sha, bad, ["c"], [])
    assert await wire.execute("GET", "c") == b"3"


# -- failures: restart, timeout, cancellation, close ----------------------------------------------
async def test_server_restart_fails_fast_then_reconnects() -> None:
    with running() as proc:
        wire = wire_for(proc.url)
        try:
            assert await wire.execute("SET", "k", "v") == b"OK"
            blocked = asyncio.create_task(wire.execute("BLPOP", "q", 5))
            with proc.client() as admin:
                await wait_blocked(admin)
            proc.stop()
            started = time.monotonic()
            with pytest.raises(rexc.ConnectionError):
                await blocked  # in flight when the server went away
            for _ in range(3):  # down: every command fails at once, none hangs
                with pytest.raises(rexc.ConnectionError):
                    await wire.execute("GET", "k")
                with pytest.raises(rexc.ConnectionError):
                    await wire.evalsha(SCRIPT_SHA, SCRIPT, ["c"], ["x"])
            assert time.monotonic() - started < 1
            proc.start()  # same port, empty data set, no scripts
            assert await wire.execute("GET", "k") is None
            assert await wire.execute("SET", "k", "again") == b"OK"
            assert await wire.evalsha(SCRIPT_SHA, SCRIPT, ["c"], ["x"]) == [b"c", b"x", 1]
            with proc.client() as admin:
                assert admin.get("k") == b"again"
                # The wire holds one connection to the new server (besides the admin's own).
                others = [c for c in admin.client_list() if c["cmd"] != "client|list"]
                assert [c["cmd"] for c in others] == ["evalsha"]
        finally:
            await wire.aclose()


async def test_silent_server_times_out_then_reconnects() -> None:
    async with SilentServer() as silent:
        wire = wire_for(silent.url(), timeout=TIMEOUT)
        try:
            started = time.monotonic()
            replies = await asyncio.gather(
                *(wire.execute("GET", f"k{i}") for i in range(5)), return_exceptions=True
            )
            elapsed = time.monotonic() - started
            assert all(isinstance(reply, rexc.TimeoutError) for reply in replies), replies
            assert TIMEOUT * 0.9 <= elapsed < TIMEOUT + 1
            assert len(silent.conns) == 1
            assert await silent.closed_by_client(0)  # the unanswered connection was dropped
            # The next command reconnects, and times out the same way.
            started = time.monotonic()
            with pytest.raises(rexc.TimeoutError):
                await wire.execute("PING")
            assert time.monotonic() - started < TIMEOUT + 1
            assert len(silent.conns) == 2
        finally:
            await wire.aclose()


async def test_silent_server_times_out_in_the_handshake() -> None:
    async with SilentServer() as silent:
        wire = wire_for(silent.url(db=3), timeout=TIMEOUT)  # SELECT 3 is never answered
        try:
            for _ in range(2):
                started = time.monotonic()
                with pytest.raises(rexc.TimeoutError):
                    await wire.execute("PING")
                assert time.monotonic() - started < TIMEOUT + 1
        finally:
            await wire.aclose()


async def test_handshake_timeout_closes_its_connection() -> None:
    async with SilentServer() as silent:
        wire = wire_for(silent.url(db=3), timeout=TIMEOUT)
        try:
            with pytest.raises(rexc.TimeoutError):
                await wire.execute("PING")
            closed = await silent.closed_by_client(0)
        finally:
            await wire.aclose()
        assert closed, "the timed-out handshake's connection is still open"


async def test_stopped_server_times_out_then_recovers() -> None:
    with running() as proc:
        assert proc.proc is not None
        wire = wire_for(proc.url, timeout=TIMEOUT)
        try:
            connection = await wire.execute("CLIENT", "ID")
            await asyncio.sleep(TIMEOUT * 1.5)  # idle longer than the timeout: no harm
            assert await wire.execute("CLIENT", "ID") == connection
            proc.proc.send_signal(signal.SIGSTOP)
            try:
                started = time.monotonic()
                with pytest.raises(rexc.TimeoutError):
                    await wire.execute("PING")
                elapsed = time.monotonic() - started
            finally:
                proc.proc.send_signal(signal.SIGCONT)
            assert TIMEOUT * 0.9 <= elapsed < TIMEOUT + 1
            assert await wire.execute("PING") == b"PONG"
            assert await wire.execute("CLIENT", "ID") != connection  # a new connection
        finally:
            await wire.aclose()


async def test_cancelled_connect_does_not_fail_the_next_command() -> None:
    with running() as proc:
        assert proc.proc is not None
        wire = wire_for(url_db(proc, 3), timeout=TIMEOUT)
        try:
            proc.proc.send_signal(signal.SIGSTOP)
            try:
                waiting = asyncio.create_task(wire.execute("PING"))
                await asyncio.sleep(0.05)  # connected, SELECT unanswered
                waiting.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await waiting
                await asyncio.sleep(TIMEOUT + 0.2)  # the connect attempt has timed out by now
            finally:
                proc.proc.send_signal(signal.SIGCONT)
            assert await wire.execute("PING") == b"PONG"  # the server answers again
        finally:
            await wire.aclose()
            with proc.client() as admin:
                kill_other_clients(admin)
            await settle()


async def test_cancelled_callers_lose_their_reply_not_the_order(r: Redis, wire: WireRedis) -> None:
    r.set("k", "v")
    assert await wire.execute("PING") == b"PONG"
    # Cancelled while the server blocks on it: its reply, when it comes, is dropped.
    blocked = asyncio.create_task(wire.execute("BLPOP", "q", 5))
    await wait_blocked(r)
    blocked.cancel()
    with pytest.raises(asyncio.CancelledError):
        await blocked
    later = asyncio.gather(
        wire.execute("ECHO", "a"), wire.execute("GET", "k"), wire.execute("INCR", "n")
    )
    await asyncio.sleep(0.05)
    assert not later.done()  # queued behind the BLPOP on the one connection
    r.rpush("q", "x")  # BLPOP answers [q, x]: nobody wants it now
    assert list(await later) == [b"a", b"v", 1]
    assert r.llen("q") == 0  # the cancelled command did run on the server
    # Cancelled right after it was issued: it still runs, and the next command is not confused.
    issued = asyncio.create_task(wire.execute("INCR", "c"))
    await asyncio.sleep(0)
    issued.cancel()
    assert await wire.execute("GET", "c") == b"1"
    assert issued.cancelled()
    # Many callers, every other one cancelled: the rest get their own replies.
    tasks = [asyncio.create_task(wire.execute("ECHO", str(i))) for i in range(50)]
    await asyncio.sleep(0)
    for task in tasks[::2]:
        task.cancel()
    results = await asyncio.gather(*tasks[1::2])
    assert results == [str(i).encode() for i in range(1, 50, 2)]
    assert await wire.execute("ECHO", "last") == b"last"


async def test_aclose_fails_later_and_in_flight_commands(r: Redis, wire: WireRedis) -> None:
    assert await wire.execute("PING") == b"PONG"
    blocked = asyncio.create_task(wire.execute("BLPOP", "q", 5))
    await wait_blocked(r)
    await wire.aclose()
    with pytest.raises(rexc.ConnectionError):
        await blocked
    for _ in range(2):
        with pytest.raises(rexc.ConnectionError):
            await wire.execute("PING")
        with pytest.raises(rexc.ConnectionError):
            await wire.evalsha(SCRIPT_SHA, SCRIPT, ["c"], ["x"])
    await wire.aclose()  # twice is fine
    assert await until_count(r, 1) == 1  # the connection is gone from the server


async def test_aclose_before_first_use(wire: WireRedis) -> None:
    await wire.aclose()
    with pytest.raises(rexc.ConnectionError):
        await wire.execute("PING")


async def test_aclose_during_connect_closes_the_client(r: Redis, wire: WireRedis) -> None:
    first = asyncio.create_task(wire.execute("PING"))
    await asyncio.sleep(0)  # connecting
    await wire.aclose()
    with contextlib.suppress(rexc.ConnectionError):
        await first
    try:
        with pytest.raises(rexc.ConnectionError):
            await wire.execute("PING")
    finally:
        await wire.aclose()  # closing twice is harmless


# -- the Store on the wire ------------------------------------------------------------------------
REQUEST = StepUpRequest(
    client_id="shop",
    redirect_uri="http://127.0.0.1:9/callback",
    scope="openid",
    subject="alice",
    scan_ref="SCAN-ALICE",
    acr="urn:idenfy:stepup:face",
    method="FACE_MATCHING",
    check_type="AUTHENTICATION",
    state="st-1",
    nonce="n-1",
)
TOKEN = "token-0123456789"
TOKEN2 = "token-abcdefghij"
BINDING = hashlib.sha256(b"browser").hexdigest()


async def store_scenario(store: Store, r: Redis, expires_at: int) -> list[Any]:
    """What a Store answers to the hot path's calls, and what it leaves in Redis."""
    out: list[Any] = [await store.ping()]
    out += [await store.first_use(name, 60) for name in ("jti-1", "jti-1", "jti-2")]
    lock = store.lock_key("alice")
    await store.lock_subject("alice", 30)
    out.append(29_000 < r.pttl(lock) <= 30_000)
    await store.lock_subject("alice", 90, extend=False)  # an existing lock stays
    out.append(29_000 < r.pttl(lock) <= 30_000)
    await store.lock_subject("alice", 90)
    out.append(89_000 < r.pttl(lock) <= 90_000)
    r.script_flush()  # the scripts must be loaded again (NOSCRIPT)
    await store.create_challenge(
        TOKEN,
        REQUEST,
        binding=BINDING,
        attempt=2,
        expires_at=expires_at,
        ttl=300,
        ip="203.0.113.9",
    )
    out.append(await store.peek(TOKEN, BINDING, full=True))
    out.append(await store.peek(TOKEN, BINDING))
    out.append(await store.peek(TOKEN, "not-the-binding", full=True))
    out.append(await store.peek(TOKEN, "not-the-binding"))
    out.append(await store.peek("no-such-token", BINDING, full=True))
    out.append(r.hgetall(store.challenge_key(TOKEN)))
    out.append(r.exists(store.request_key(TOKEN)))  # the request is in the hash
    out.append(299_000 < r.pttl(store.challenge_key(TOKEN)) <= 300_000)
    request = await store.challenge_request(TOKEN)
    out.append(request.subject if request is not None else None)
    out.append(await store.get_subject("alice"))
    hits = [await store.hit_limits("bob", [("m", 2, 60)]) for _ in range(3)]
    out.append([(hit.locked, hit.index, hit.wait > 0) for hit in hits])
    out.append(await store.finish(TOKEN, BINDING, mode="cancel", max_attempts=3))
    out.append(await store.peek(TOKEN, BINDING, full=True))
    # A check counts nothing; an address's open challenges: added, expired, ended.
    checks = [await store.hit_limits("bob", [("m", 2, 60)], add=False) for _ in range(2)]
    out.append([(hit.index, hit.wait > 0) for hit in checks])
    carol = tag("carol")
    out.append(
        [
            await store.open_challenges(carol, "add", "t1", expires_at),
            await store.open_challenges(carol, "add", "t2", expires_at),
            await store.open_challenges(carol, "add", "t0", 1),  # its session has expired
            await store.open_challenges(carol),
            await store.open_challenges(carol, "remove", "t1"),
        ]
    )
    for who in ("bob", "nobody"):
        counters = r.hgetall(store.rate_key(who))
        out.append({k: v for k, v in counters.items() if not k.endswith((b":e", b"x"))})
    # Off the hot path, through the same backend: the directory and the shared secrets.
    await store.set_subject("dave", "SCAN-DAVE")
    out += [await store.get_subject("dave"), await store.delete_subject("dave")]
    out += [await store.get_subject("dave"), await store.shared_secret("k", lambda: "first")]
    out.append(await store.shared_secret("k", lambda: "second"))  # the first writer won
    out.append(await store.replace_secret("k", "not-it", "x"))
    out.append(await store.replace_secret("k", "first", "rotated"))
    out.append(r.hget(store.secrets_key, "k"))
    # A webhook approves another challenge, the browser's finish issues its code, /token
    # redeems it, /userinfo reads the access token; a later "try again" changes nothing.
    await store.create_challenge(
        TOKEN2, REQUEST, binding=BINDING, attempt=1, expires_at=expires_at, ttl=300
    )
    hook = await store.webhook_transition(
        token=TOKEN2,
        webhook_id="hook-1",
        verdict=HookVerdict.SUCCESS,
        outcome="SUCCESS",
        retryable=False,
        scan_ref=REQUEST.scan_ref,
        check_type=REQUEST.check_type,
        method=REQUEST.method,
        marker_ttl=60,
    )
    out.append((hook.result, hook.detail, hook.state))
    code = code_for(TOKEN2, "browser")
    finished = await store.finish(
        TOKEN2, BINDING, mode=FinishMode.FINISH, max_attempts=3, code=code
    )
    out.append(finished.kind)
    access_token = new_secret_for(TOKEN2)
    kind, grant = await store.redeem_code(code, access_token, 60)
    out += [(kind, grant.subject if grant else None), await store.access_token_claims(access_token)]
    out.append((await store.claim_retry(TOKEN2, BINDING, 3)).kind)
    out.append(await store.link_retry(TOKEN2, None))
    return out


async def test_store_answers_the_same_with_both_backends(r: Redis, server: RedisProcess) -> None:
    client = AsyncRedis.from_url(server.url)
    wire = wire_for(server.url)
    try:
        plain = Store(RedisPyBackend(client), "stepup")
        expires_at = int(time.time()) + 300
        without = await store_scenario(plain, r, expires_at)
        r.flushall()
        wired = Store(WireBackend(wire), "stepup")
        with_wire = await store_scenario(wired, r, expires_at)
        assert with_wire == without
        # And the answers are the right ones.
        assert without[:4] == [True, True, False, True]
        assert without[4:7] == [True, True, True]
        full = without[7]
        assert (full.state, full.bound, full.request, full.attempt) == (
            "PENDING",
            True,
            REQUEST,
            2,
        )
        assert (without[8].state, without[8].bound, without[8].request) == ("PENDING", True, None)
        assert without[9].bound is False and without[10].bound is False
        assert without[11].state is None and without[11].bound is False
        # The binding: the browser secret's SHA-256, in base64url.
        binding = base64.urlsafe_b64encode(hashlib.sha256(b"browser").digest()).rstrip(b"=")
        assert without[12][b"state"] == b"PENDING" and without[12][b"binding"] == binding
        assert StepUpRequest.from_json(request_parts(without[12]) or b"") == REQUEST
        assert without[13] == 0
        assert without[15] == "alice"
        assert without[17] == [(False, -1, False), (False, -1, False), (False, 0, True)]
        assert without[18].kind is VerdictKind.CANCELED and without[18].request == REQUEST
        assert without[19].state == "CONSUMED"
        assert without[20] == [(0, True), (0, True)]  # over the limit, and still three
        assert without[21] == [1, 2, 2, 2, 1]
        assert without[22] == {b"m": b"3"}
        assert without[23] == {}
        assert without[24:32] == [
            "SCAN-DAVE",
            True,
            None,
            "first",
            "first",
            False,
            True,
            b"rotated",
        ]
        assert without[32] == ("applied", "APPROVED", "APPROVED")
        assert without[33] is VerdictKind.APPROVED
        assert without[34:36] == [("ok", "alice"), '{"sub":"alice"}']
        assert without[36:] == [VerdictKind.CONSUMED, False]
        # The wired store's hot path really is the wire: closed, it fails closed.
        await wire.aclose()
        assert await wired.ping() is False
        with pytest.raises(StoreUnavailable):
            await wired.first_use("jti-3", 60)
        with pytest.raises(StoreUnavailable):
            await wired.peek(TOKEN, BINDING, full=True)
        assert await plain.first_use("jti-3", 60) is True
    finally:
        await wire.aclose()
        await client.aclose()


async def test_store_on_the_wire_fails_closed_while_the_server_is_down() -> None:
    with running() as proc:
        wire = wire_for(proc.url, timeout=TIMEOUT)
        store = Store(WireBackend(wire), "stepup")
        try:
            assert await store.ping() is True
            assert await store.first_use("jti", 60) is True
            proc.stop()
            assert await store.ping() is False
            with pytest.raises(StoreUnavailable):
                await store.first_use("jti", 60)
            with pytest.raises(StoreUnavailable):
                await store.create_challenge(
                    TOKEN, REQUEST, binding=BINDING, attempt=1, expires_at=0, ttl=60
                )
            proc.start()
            assert await store.ping() is True
            assert await store.first_use("jti", 60) is True  # a new, empty server
            await store.create_challenge(
                TOKEN,
                REQUEST,
                binding=BINDING,
                attempt=1,
                expires_at=int(time.time()) + 60,
                ttl=60,
            )
            peek = await store.peek(TOKEN, BINDING, full=True)
            assert (peek.state, peek.request) == ("PENDING", REQUEST)
        finally:
            await store.aclose()


# -- subscriptions (the wake-up channel) -------------------------------------------------------
@pytest.fixture
def quick_keep_alive(monkeypatch: pytest.MonkeyPatch) -> None:
    """Subscriptions check their connection every 0.1 s instead of every 15 s."""
    monkeypatch.setattr(store_wire, "SUBSCRIPTION_PING_SECONDS", 0.1)


@pytest.mark.usefixtures("quick_keep_alive")
async def test_subscription_hands_over_each_message_and_ends_with_the_server() -> None:
    with running() as proc:
        wire = wire_for(proc.url, timeout=0.5)
        got: list[bytes] = []
        subscription = await wire.subscribe("events", got.append)
        try:
            with proc.client() as publisher:
                assert publisher.publish("events", "tok-1") == 1
                assert publisher.publish("other", "nope") == 0
                assert publisher.publish("events", "tok-2") == 1
            for _ in range(100):
                if len(got) == 2:
                    break
                await asyncio.sleep(0.01)
            assert got == [b"tok-1", b"tok-2"]
            await asyncio.sleep(0.3)  # several keep-alive PINGs, answered: still subscribed
            with proc.client() as publisher:
                assert publisher.publish("events", "tok-3") == 1
            # The server goes away: closed() returns instead of waiting for ever.
            proc.stop()
            async with asyncio.timeout(2):
                await subscription.closed()
        finally:
            await subscription.aclose()
            await wire.aclose()
    assert got[-1] == b"tok-3"


@pytest.mark.usefixtures("quick_keep_alive")
async def test_a_silent_subscription_is_dropped_by_its_keep_alive() -> None:
    with running() as proc:
        wire = wire_for(proc.url, timeout=0.3)
        subscription = await wire.subscribe("events", lambda data: None)
        assert proc.proc is not None
        proc.proc.send_signal(signal.SIGSTOP)  # alive, but answers nothing
        try:
            started = time.monotonic()
            async with asyncio.timeout(3):
                await subscription.closed()
            assert time.monotonic() - started < 2
        finally:
            proc.proc.send_signal(signal.SIGCONT)
            await subscription.aclose()
            await wire.aclose()


# -- TLS (rediss://) ------------------------------------------------------------------------------
def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stepup-test")])
    now = datetime.datetime.now(datetime.UTC)
    san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(san, critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


async def test_tls_with_a_trusted_certificate_and_refused_without(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    with contextlib.closing(free_socket()) as sock:
        tls_port = sock.getsockname()[1]
    tls = [
        "--tls-port",
        str(tls_port),
        "--tls-cert-file",
        str(cert),
        "--tls-key-file",
        str(key),
        "--tls-ca-cert-file",
        str(cert),
        "--tls-auth-clients",
        "no",
    ]
    with running(*tls):
        base = f"rediss://127.0.0.1:{tls_port}/0"
        trusted = wire_for(f"{base}?ssl_ca_certs={cert}")
        unchecked = wire_for(f"{base}?ssl_cert_reqs=none")
        untrusted = wire_for(base)  # the system's CAs do not know this certificate
        try:
            assert await trusted.execute("SET", "k", "over-tls") == b"OK"
            assert await unchecked.execute("GET", "k") == b"over-tls"
            with pytest.raises(rexc.ConnectionError):
                await untrusted.execute("PING")
        finally:
            for wire in (trusted, unchecked, untrusted):
                await wire.aclose()


async def test_a_subscribe_that_gets_no_answer_times_out_as_a_redis_error() -> None:
    done = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1 << 16)  # takes the SUBSCRIBE, never answers
        await done.wait()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    wire = wire_for(f"redis://127.0.0.1:{port}/0", timeout=0.3)
    try:
        with pytest.raises(rexc.TimeoutError):
            await wire.subscribe("events", lambda data: None)
    finally:
        await wire.aclose()
        done.set()
        server.close()
        await server.wait_closed()
        await asyncio.sleep(0.05)  # the handler closes its side


async def test_a_held_up_event_loop_is_not_taken_for_a_silent_server() -> None:
    """Thousands of open push streams make a full garbage collection last a second or more,
    with every loop callback waiting. The replies that arrived meanwhile are still unread
    when the watchdog's late tick runs; it must not drop the connection (and fail every
    command in flight) for what the loop, not Redis, held up."""
    with running() as proc:
        wire = wire_for(proc.url, timeout=TIMEOUT)
        try:
            connection = await wire.execute("CLIENT", "ID")
            pending = [asyncio.ensure_future(wire.execute("INCR", "held-up")) for _ in range(20)]
            await asyncio.sleep(0)  # sent: their replies come while the loop is held up
            time.sleep(TIMEOUT * 3)  # noqa: ASYNC251 - the point: the loop held up, as by a GC
            assert await asyncio.gather(*pending) == list(range(1, 21))
            assert await wire.execute("CLIENT", "ID") == connection  # not dropped
        finally:
            await wire.aclose()
