"""Real redis-server processes, and the Redis key names the store uses.

Tests read and write the store's keys directly (to age a challenge, or check what was kept);
they take the names from ``Store`` itself, so a change of layout cannot leave a test reading
a key nobody writes.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import time
from pathlib import Path

from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from idenfy_stepup.store import Store, redis_server_binary

from .servers import free_socket, stop_process


class RedisProcess:
    """One real redis-server on a loopback port, in its own folder."""

    def __init__(self, *extra: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="stepup-redis-"))
        with contextlib.closing(free_socket()) as s:
            self.port = s.getsockname()[1]
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [
            redis_server_binary(),
            *("--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir)),
            *("--save", "", "--daemonize", "no", "--loglevel", "warning"),
            *self.extra,
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                with Redis(port=self.port, socket_timeout=0.5) as r:
                    r.ping()
                return
            except Exception:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout=10)
            self.proc = None

    def client(self) -> Redis:
        return Redis(port=self.port)


# The key functions of a store with the default prefix. Its client never connects: building a
# Store only registers its scripts, which is local.
KEYS = Store(AsyncRedis(), prefix="stepup")


def challenge_key(token: str) -> str:
    """The hash of a challenge record."""
    return KEYS.challenge_key(token)


def request_key(token: str) -> str:
    """Where a challenge written before its request moved into its hash kept the request."""
    return KEYS.request_key(token)


def request_parts(fields: dict[bytes, bytes]) -> bytes | None:
    """The request a challenge's hash (its HGETALL) holds: the fields ``q1`` … ``q<qn>`` joined
    in order; None when the hash holds none."""
    count = fields.get(b"qn")
    if count is None:
        return None
    return b"".join(fields[f"q{n}".encode()] for n in range(1, int(count) + 1))


async def stored_request(redis: AsyncRedis, token: str) -> bytes | None:
    """The validated OIDC request's JSON as the challenge's hash holds it."""
    return request_parts(await redis.hgetall(challenge_key(token)))


async def replace_stored_request(redis: AsyncRedis, token: str, value: bytes | str) -> None:
    """Make the challenge's hash hold ``value`` as its request (a damaged record)."""
    key = challenge_key(token)
    parts = [k for k in await redis.hkeys(key) if k == b"qn" or (k[1:].isdigit() and k[:1] == b"q")]
    if parts:
        await redis.hdel(key, *parts)
    await redis.hset(key, mapping={"qn": 1, "q1": value})


def record_keys(code_or_access_token: str) -> tuple[str]:
    """Where a code or access token is recorded: the challenge it names (``token.random``),
    whose hash holds its request too."""
    token = code_or_access_token.rpartition(".")[0]
    return (challenge_key(token),)


def rate_key(identity: str) -> str:
    """The abuse-limit counters of one identity (an address, ``client:<id>`` or a subject)."""
    return KEYS.rate_key(identity)


def lock_key(subject: str) -> str:
    """A subject's lock-out."""
    return KEYS.lock_key(subject)


def open_key(identity_tag: str) -> str:
    """An address's open challenges (by the address identity's tag)."""
    return KEYS.open_key(identity_tag)


def pushed_key(request_uri: str) -> str:
    """A pushed authorization request (/par), under its request_uri's SHA-256."""
    return KEYS.pushed_key(request_uri)


def reuse_key(secret: str) -> str:
    """The reuse record a browser's reuse cookie secret names."""
    return KEYS.reuse_key(secret)


SECRETS_KEY = KEYS.secrets_key


def unfinished_keys(token: str) -> tuple[str, str]:
    """The approvals not finished yet (a sorted set: token → deadline) and ``token``'s record."""
    from idenfy_stepup.store.unfinished import Unfinished

    unfinished = Unfinished(KEYS)
    return unfinished.set_key, unfinished.record_key(token)
