"""Http11Fetch against scripted servers on loopback: what the edge's own HTTP/1.1 client adds.

One write per request, the pool (reuse, its bound, a server closing an idle connection, the
one retry a GET gets and a POST does not), the reply framings (chunked, read until close),
encodings, the size cap, refused header injection, read and connect timeouts, and TLS (a
certificate or host name the client must refuse). tests/idenfy/test_transport.py runs the
same fetch against a real uvicorn server.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import gzip
import ipaddress
import socket
import ssl
import struct
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import uvloop
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from idenfy_stepup.idenfy.client import IdenfyClient, VendorNotEnrolled, default_timeout
from idenfy_stepup.idenfy.http11 import MAX_REPLY_BYTES, Http11Fetch, Origin, split_url
from idenfy_stepup.idenfy.transport import (
    FetchError,
    FetchTimeout,
    VendorRequest,
    VendorResponse,
    VendorTimeout,
)

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"
TCP_INFO_DATA_SEGS_IN = 152  # struct tcp_info.tcpi_data_segs_in (Linux 4.6+)


@dataclass
class Seen:
    """What a scripted server received: each request's head and body, per connection."""

    connections: int = 0
    requests: list[tuple[bytes, bytes]] = field(default_factory=list)
    segments: list[int] = field(default_factory=list)
    closed_by_client: asyncio.Event = field(default_factory=asyncio.Event)
    request_seen: asyncio.Event = field(default_factory=asyncio.Event)


Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter, Seen, int], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader, seen: Seen) -> bytes | None:
    """One request's head (its body is read and recorded); None at the client's EOF."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        seen.closed_by_client.set()
        return None
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
    seen.requests.append((head, await reader.readexactly(length)))
    seen.request_seen.set()
    return head


@contextlib.asynccontextmanager
async def scripted(
    script: Script, tls: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[str, Seen]]:
    seen = Seen()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.connections += 1
        try:
            await script(reader, writer, seen, seen.connections)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=tls)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}", seen
    finally:
        server.close()
        await server.wait_closed()


async def answer_each(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Seen, _: int
) -> None:
    """Keep-alive: every request gets a small JSON reply."""
    while await read_request(reader, seen) is not None:
        writer.write(OK)


def replies(*chunks: bytes, close: bool = False, pause: float = 0.0) -> Script:
    """Answers the first request with ``chunks``, each its own write, then keeps the connection
    open for more (the same reply) unless ``close``."""

    async def script(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Seen, _: int
    ) -> None:
        while await read_request(reader, seen) is not None:
            for chunk in chunks:
                writer.write(chunk)
                await writer.drain()
                await asyncio.sleep(pause)
            if close:
                return

    return script


async def call(
    fetch: Http11Fetch,
    url: str,
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    timeouts: VendorTimeout | None = None,
) -> VendorResponse:
    spec = timeouts or default_timeout(5)
    return await fetch(VendorRequest(method, url, headers or {}, body, spec))


@pytest.fixture
async def fetch() -> AsyncIterator[Http11Fetch]:
    edge = Http11Fetch()
    try:
        yield edge
    finally:
        await edge.aclose()


async def test_each_request_leaves_in_one_tcp_segment(fetch: Http11Fetch) -> None:
    async def count_segments(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Seen, _: int
    ) -> None:
        sock = writer.get_extra_info("socket")
        while await read_request(reader, seen) is not None:
            info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
            seen.segments.append(struct.unpack_from("I", info, TCP_INFO_DATA_SEGS_IN)[0])
            writer.write(OK)

    async with scripted(count_segments) as (url, seen):
        for _ in range(3):
            body = b'{"scanRef":"' + b"S" * 400 + b'"}'
            await call(fetch, f"{url}/partner/authentication-info", method="POST", body=body)
    # Cumulative data segments received on the one kept-alive connection: one per request
    # (head and body together), not two.
    assert (seen.connections, seen.segments) == (1, [1, 2, 3])


def test_the_fetch_runs_on_uvloop_as_the_provider_does() -> None:
    async def flow() -> tuple[int, int, int]:
        edge = Http11Fetch()
        try:
            async with scripted(answer_each) as (url, seen):
                create = await call(edge, f"{url}/partner/authentication-info", method="POST")
                check = await call(edge, f"{url}/identification/facial-auth/S/check-status/")
            return create.status, check.status, seen.connections
        finally:
            await edge.aclose()

    assert uvloop.run(flow()) == (200, 200, 1)


async def test_request_head_is_what_http_1_1_needs(fetch: Http11Fetch) -> None:
    async with scripted(answer_each) as (url, seen):
        await call(fetch, f"{url}/a/b?x=1#fragment", headers={"Accept": "application/json"})
        await call(fetch, f"{url}/p", method="POST")
    get, post = (head for head, _ in seen.requests)
    host = url.removeprefix("http://")
    assert (
        get
        == (
            f"GET /a/b?x=1 HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\n"
            "Accept-Encoding: identity\r\n\r\n"
        ).encode()
    )
    assert post.startswith(b"POST /p HTTP/1.1\r\n") and b"\r\nContent-Length: 0\r\n" in post


async def test_concurrent_requests_share_a_bounded_pool() -> None:
    edge = Http11Fetch(pool_size=1)
    try:
        async with scripted(answer_each) as (url, seen):
            replies_ = await asyncio.gather(*(call(edge, f"{url}/x") for _ in range(5)))
        assert [reply.status for reply in replies_] == [200] * 5
        assert (seen.connections, len(seen.requests)) == (1, 5)
    finally:
        await edge.aclose()


async def test_waiting_for_a_free_connection_is_bounded_by_the_pool_timeout() -> None:
    edge = Http11Fetch(pool_size=1)
    hold = VendorTimeout(connect=2, read=5, pool=2)
    quick = VendorTimeout(connect=2, read=5, pool=0.2)
    try:
        async with scripted(replies()) as (url, _seen):  # never answers
            first = asyncio.create_task(call(edge, f"{url}/x", timeouts=hold))
            await asyncio.sleep(0.05)
            with pytest.raises(FetchTimeout):
                await call(edge, f"{url}/x", timeouts=quick)
            first.cancel()
            await asyncio.gather(first, return_exceptions=True)
    finally:
        await edge.aclose()


async def test_a_connection_the_server_closed_while_idle_is_not_reused(fetch: Http11Fetch) -> None:
    async with scripted(replies(OK, close=True)) as (url, seen):
        await call(fetch, f"{url}/x")
        await asyncio.sleep(0.05)  # the server's FIN arrives while the connection is idle
        # A POST is never retried, so it succeeds only if the closed connection left the pool.
        reply = await call(fetch, f"{url}/partner/authentication-info", method="POST", body=b"{}")
    assert reply.status == 200
    assert (seen.connections, len(seen.requests)) == (2, 2)


async def test_a_connection_idle_too_long_is_not_reused() -> None:
    edge = Http11Fetch(idle_seconds=0.1)
    try:
        async with scripted(answer_each) as (url, seen):
            await call(edge, f"{url}/x")
            await asyncio.sleep(0.2)
            await call(edge, f"{url}/x")
        assert seen.connections == 2
    finally:
        await edge.aclose()


async def test_a_cancelled_request_closes_its_connection_and_frees_its_slot() -> None:
    edge = Http11Fetch(pool_size=1)
    try:
        async with scripted(drops_nothing_answers_second_connection()) as (url, seen):
            waiting = asyncio.create_task(call(edge, f"{url}/x"))
            await asyncio.wait_for(seen.request_seen.wait(), 5)
            waiting.cancel()
            await asyncio.gather(waiting, return_exceptions=True)
            # Half a reply may still come on the first connection: it is not reused.
            assert (await call(edge, f"{url}/x")).status == 200
        assert seen.connections == 2
    finally:
        await edge.aclose()


def drops_nothing_answers_second_connection() -> Script:
    """The first connection reads a request and never answers; later ones answer."""

    async def script(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Seen, number: int
    ) -> None:
        if number > 1:
            await answer_each(reader, writer, seen, number)
            return
        await read_request(reader, seen)
        await read_request(reader, seen)  # until the client closes

    return script


def drops_the_second_request() -> Script:
    """The first connection answers once, then reads the next request and closes without a
    byte: a server that closed an idle keep-alive connection just as the request went out."""

    async def script(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Seen, number: int
    ) -> None:
        if number > 1:
            await answer_each(reader, writer, seen, number)
            return
        await read_request(reader, seen)
        writer.write(OK)
        await read_request(reader, seen)

    return script


async def test_a_get_on_a_reused_connection_closed_unanswered_is_sent_once_more(
    fetch: Http11Fetch,
) -> None:
    async with scripted(drops_the_second_request()) as (url, seen):
        await call(fetch, f"{url}/x")
        reply = await call(fetch, f"{url}/identification/facial-auth/S/check-status/")
    assert reply.status == 200
    assert (seen.connections, len(seen.requests)) == (2, 3)


async def test_a_post_on_a_reused_connection_closed_unanswered_is_not_sent_again(
    fetch: Http11Fetch,
) -> None:
    async with scripted(drops_the_second_request()) as (url, seen):
        await call(fetch, f"{url}/x")
        with pytest.raises(FetchError) as info:
            await call(fetch, f"{url}/partner/authentication-info", method="POST", body=b"{}")
    assert not isinstance(info.value, FetchTimeout)
    assert (seen.connections, len(seen.requests)) == (1, 2)  # the create-token call went once


async def test_a_chunked_reply_is_decoded_and_the_connection_kept(fetch: Http11Fetch) -> None:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunks = (head, b'5\r\n{"typ\r\n', b'11\r\ne":"AUTHENTICATIO\r\n', b'3\r\nN"}\r\n0\r\n\r\n')
    async with scripted(replies(*chunks)) as (url, seen):
        first = await call(fetch, f"{url}/x")
        second = await call(fetch, f"{url}/x")
    assert first.body == second.body == b'{"type":"AUTHENTICATION"}'
    assert seen.connections == 1


async def test_a_reply_read_until_the_server_closes(fetch: Http11Fetch) -> None:
    reply = b'HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{"type":"ENROLLMENT"}'
    async with scripted(replies(reply, close=True)) as (url, seen):
        assert (await call(fetch, f"{url}/x")).body == b'{"type":"ENROLLMENT"}'
        assert (await call(fetch, f"{url}/x")).body == b'{"type":"ENROLLMENT"}'
    assert seen.connections == 2


async def test_an_informational_reply_is_skipped(fetch: Http11Fetch) -> None:
    async with scripted(replies(b"HTTP/1.1 100 Continue\r\n\r\n" + OK)) as (url, _seen):
        reply = await call(fetch, f"{url}/x")
    assert (reply.status, reply.body) == (200, b"{}")


def encoded(name: bytes, payload: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Encoding: %s\r\nContent-Length: %d\r\n\r\n%s" % (
        name,
        len(payload),
        payload,
    )


@pytest.mark.parametrize(
    "reply",
    [
        encoded(b"gzip", gzip.compress(b'{"a":1}')),
        encoded(b"deflate", zlib.compress(b'{"a":1}')),
        encoded(b"deflate", zlib.compress(b'{"a":1}')[2:-4]),  # raw deflate, no zlib wrapper
    ],
    ids=["gzip", "deflate", "raw-deflate"],
)
async def test_encoded_replies_are_decoded(fetch: Http11Fetch, reply: bytes) -> None:
    async with scripted(replies(reply)) as (url, _seen):
        assert (await call(fetch, f"{url}/x")).body == b'{"a":1}'


@pytest.mark.parametrize(
    "reply",
    [
        encoded(b"br", b"\x0b\x02\x80{}\x03"),
        encoded(b"gzip", gzip.compress(b'{"a":1}')[:-6]),  # truncated
        encoded(b"gzip", gzip.compress(b"0" * (MAX_REPLY_BYTES + 1))),  # inflates past the cap
    ],
    ids=["unknown-encoding", "truncated-gzip", "gzip-bomb"],
)
async def test_a_reply_that_cannot_be_decoded_is_a_fetch_error(
    fetch: Http11Fetch, reply: bytes
) -> None:
    async with scripted(replies(reply)) as (url, _seen):
        with pytest.raises(FetchError):
            await call(fetch, f"{url}/x")


@pytest.mark.parametrize(
    "chunks",
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (2 * MAX_REPLY_BYTES),)
        + (b"x" * 65536,) * 20,
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",)
        + (b"10000\r\n" + b"x" * 65536 + b"\r\n",) * 20,
        (b"HTTP/1.1 200 OK\r\n",) + (b"X-Pad: " + b"x" * 65536 + b"\r\n",) * 20,
    ],
    ids=["content-length", "chunked", "headers"],
)
async def test_a_reply_larger_than_the_cap_is_a_fetch_error(
    fetch: Http11Fetch, chunks: tuple[bytes, ...]
) -> None:
    async with scripted(replies(*chunks)) as (url, _seen):
        with pytest.raises(FetchError, match="larger than"):
            await call(fetch, f"{url}/x")


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/x\r\nX-Injected: 1", {}),
        ("/x HTTP/1.1\r\n\r\nGET /y", {}),
        ("/x\n", {}),
        ("/caf\u00e9", {}),
        ("/x", {"Accept": "application/json\r\nX-Injected: 1"}),
        ("/x", {"Accept": "a\nb"}),
        ("/x", {"Accept": "a\x00b"}),
        ("/x", {"X-Bad Name": "1"}),
        ("/x", {"X-Bad:Name": "1"}),
        ("/x", {"Host": "elsewhere"}),
        ("/x", {"Content-Length": "0"}),
        ("/x", {"Transfer-Encoding": "chunked"}),
    ],
)
async def test_header_injection_is_refused_before_anything_is_sent(
    fetch: Http11Fetch, path: str, headers: dict[str, str]
) -> None:
    async with scripted(answer_each) as (url, seen):
        with pytest.raises(FetchError):
            await call(fetch, url + path, headers=headers)
    assert seen.connections == 0


@pytest.mark.parametrize(
    "url",
    ["ftp://127.0.0.1/", "http://user:pw@127.0.0.1/", "http:///x", "http://127.0.0.1:99999/"],
)
async def test_urls_the_edge_does_not_send_to_are_fetch_errors(
    fetch: Http11Fetch, url: str
) -> None:
    with pytest.raises(FetchError):
        await call(fetch, url)


@pytest.mark.parametrize(
    ("url", "origin", "target"),
    [
        ("http://h", Origin("http", "h", 80, "h"), "/"),
        ("http://h?a=/b", Origin("http", "h", 80, "h"), "/?a=/b"),
        ("http://h:81/p?q#f", Origin("http", "h", 81, "h:81"), "/p?q"),
        (
            "https://ivs.idenfy.com:443/x",
            Origin("https", "ivs.idenfy.com", 443, "ivs.idenfy.com"),
            "/x",
        ),
        ("https://[::1]:8443/x", Origin("https", "::1", 8443, "[::1]:8443"), "/x"),
    ],
)
def test_urls_are_split_into_origin_and_request_target(
    url: str, origin: Origin, target: str
) -> None:
    assert split_url(url, {}) == (origin, target)


async def test_a_scan_ref_with_line_breaks_stays_inside_the_path(fetch: Http11Fetch) -> None:
    async with scripted(replies(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")) as (
        url,
        seen,
    ):
        client = IdenfyClient(fetch, url, "key", "secret", default_timeout(5))
        with pytest.raises(VendorNotEnrolled):
            await client.check_status("S-1\r\nX-Injected: 1")
    head = seen.requests[0][0]
    assert head.startswith(b"GET /identification/facial-auth/S-1%0D%0AX-Injected%3A%201/")
    assert b"\r\nX-Injected" not in head


async def test_read_timeout_bounds_each_wait_not_the_whole_reply(fetch: Http11Fetch) -> None:
    parts = (b"HTTP/1.1 200 OK\r\n", b"Content-Length: 2\r\n", b"\r\n{", b"}")
    spec = VendorTimeout(connect=2, read=1.0, pool=2)
    async with scripted(replies(*parts, pause=0.4)) as (url, _seen):
        assert (await call(fetch, f"{url}/x", timeouts=spec)).body == b"{}"  # 1.6 s in all


async def test_a_reply_that_stops_coming_is_a_timeout(fetch: Http11Fetch) -> None:
    spec = VendorTimeout(connect=2, read=0.3, pool=2)
    async with scripted(replies(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{")) as (url, _):
        with pytest.raises(FetchTimeout):
            await call(fetch, f"{url}/x", timeouts=spec)


async def test_connecting_is_bounded_by_the_connect_timeout(fetch: Http11Fetch) -> None:
    # A listener that never accepts, its backlog filled: the next handshake gets no answer.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    fillers: list[socket.socket] = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        address = listener.getsockname()
        for _ in range(4):
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            filler.setblocking(False)
            fillers.append(filler)
            with contextlib.suppress(BlockingIOError):
                filler.connect(address)
        spec = VendorTimeout(connect=0.3, read=5, pool=2)
        with pytest.raises(FetchTimeout):
            await call(fetch, f"http://127.0.0.1:{address[1]}/x", timeouts=spec)
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


async def test_garbage_instead_of_http_is_a_fetch_error(fetch: Http11Fetch) -> None:
    async with scripted(replies(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")) as (url, _seen):
        with pytest.raises(FetchError):
            await call(fetch, f"{url}/x")


async def test_aclose_closes_every_connection(fetch: Http11Fetch) -> None:
    async with scripted(answer_each) as (url, seen):
        await call(fetch, f"{url}/x")
        await fetch.aclose()
        await asyncio.wait_for(seen.closed_by_client.wait(), 5)


# TLS


@dataclass(frozen=True)
class Certificates:
    ca_pem: bytes
    server: ssl.SSLContext


def certificates(tmp_path: Path, *, names: list[x509.GeneralName]) -> Certificates:
    """A CA of its own and a server certificate it signed for ``names``."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test vendor CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vendor")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    chain = tmp_path / "server.pem"
    chain.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        + leaf.public_bytes(serialization.Encoding.PEM)
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(chain)
    return Certificates(ca.public_bytes(serialization.Encoding.PEM), server)


LOOPBACK = [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]


def trusting(ca_pem: bytes) -> ssl.SSLContext:
    return ssl.create_default_context(cadata=ca_pem.decode())


async def test_tls_to_a_trusted_certificate_is_kept_alive(tmp_path: Path) -> None:
    certs = certificates(tmp_path, names=LOOPBACK)
    edge = Http11Fetch(tls=trusting(certs.ca_pem))
    try:
        async with scripted(answer_each, tls=certs.server) as (url, seen):
            for _ in range(2):
                assert (await call(edge, f"{url}/x")).body == b"{}"
        assert seen.connections == 1
    finally:
        await edge.aclose()


async def test_tls_to_a_certificate_of_an_unknown_ca_is_refused(
    fetch: Http11Fetch, tmp_path: Path
) -> None:
    certs = certificates(tmp_path, names=LOOPBACK)
    async with scripted(answer_each, tls=certs.server) as (url, seen):
        with pytest.raises(FetchError) as info:
            await call(fetch, f"{url}/x")  # the system's CAs: this CA is not one of them
    assert not isinstance(info.value, FetchTimeout)
    assert seen.requests == []


async def test_tls_to_a_certificate_for_another_host_is_refused(tmp_path: Path) -> None:
    certs = certificates(tmp_path, names=[x509.DNSName("ivs.idenfy.example")])
    edge = Http11Fetch(tls=trusting(certs.ca_pem))
    try:
        async with scripted(answer_each, tls=certs.server) as (url, seen):
            with pytest.raises(FetchError):
                await call(edge, f"{url}/x")
        assert seen.requests == []
    finally:
        await edge.aclose()


def test_a_tls_context_that_does_not_verify_is_refused() -> None:
    unverified = ssl.create_default_context()
    unverified.check_hostname = False
    with pytest.raises(ValueError):
        Http11Fetch(tls=unverified)
    unverified.verify_mode = ssl.CERT_NONE
    with pytest.raises(ValueError):
        Http11Fetch(tls=unverified)
