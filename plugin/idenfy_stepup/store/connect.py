"""Connecting to Redis: plain URLs, Sentinel and Cluster; which backend serves a URL."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import Sentinel

from ..settings import RedisSettings
from .backends import RedisPyBackend, StoreBackend, WireBackend
from .wire import WireRedis


class SentinelRedis(Redis):
    """The master's client under Sentinel; closing it closes the sentinel clients as well."""

    manager: Sentinel | None = None

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        try:
            await super().aclose(close_connection_pool)
        finally:
            if self.manager is not None:
                sentinel, self.manager = self.manager, None
                await sentinel.aclose()


def open_backend(settings: RedisSettings, url: str | None = None) -> StoreBackend:
    """The one client for ``url`` (or the configured one): the wire client for a single server,
    redis-py for Sentinel, Cluster and URL options the wire client does not know. Nothing is
    sent until first use."""
    url = url or settings.url
    wire = WireRedis.for_url(url, settings.socket_timeout)
    if wire is not None:
        return WireBackend(wire)
    return RedisPyBackend(connect(settings, url))


def connect(settings: RedisSettings, url: str | None = None) -> Redis:
    """A client for ``url`` (or the configured one); nothing is sent until first use."""
    url = url or settings.url
    opts: dict[str, Any] = {
        "socket_timeout": settings.socket_timeout,
        "socket_connect_timeout": settings.socket_timeout,
        "health_check_interval": 15,
    }
    scheme = urlsplit(url).scheme
    if scheme == "redis+sentinel":
        return _sentinel(url, opts)
    if scheme in ("redis+cluster", "rediss+cluster"):
        real = url.replace("+cluster", "", 1)
        cluster: Any = RedisCluster.from_url(real, **_cluster_opts(opts))
        return cluster  # type: ignore[no-any-return]
    return Redis.from_url(url, **opts)


def _cluster_opts(opts: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in opts.items() if k != "health_check_interval"}


def _sentinel(url: str, opts: dict[str, Any]) -> Redis:
    """``redis+sentinel://[:password@]host:port[,host:port]/service[/db][?sentinel_password=…]``."""
    parts = urlsplit(url)
    hosts = parts.netloc.rsplit("@", 1)[-1].split(",")
    nodes = [(h.rsplit(":", 1)[0], int(h.rsplit(":", 1)[1]) if ":" in h else 26379) for h in hosts]
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise ValueError("a sentinel URL needs the service name as its path")
    query = parse_qs(parts.query)
    sentinel_kwargs = {k: opts[k] for k in ("socket_timeout", "socket_connect_timeout")}
    if "sentinel_password" in query:
        sentinel_kwargs["password"] = query["sentinel_password"][0]
    sentinel = Sentinel(nodes, sentinel_kwargs=sentinel_kwargs, **opts)  # type: ignore[no-untyped-call]
    db = int(path[1]) if len(path) > 1 else 0
    master: SentinelRedis = sentinel.master_for(
        path[0], redis_class=SentinelRedis, db=db, password=parts.password
    )
    master.manager = sentinel
    return master
