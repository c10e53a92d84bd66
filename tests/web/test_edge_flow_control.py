"""The edge's flow control: uvicorn's, with its Event made only while writing is paused.

Driven by a real asyncio transport over loopback: a peer that does not read fills the
socket's buffers, the transport pauses the protocol, and a writer waiting in ``drain`` goes
on once the peer reads.
"""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from idenfy_stepup.web.edge import CORK_BYTES, CorkedTransport, LazyFlowControl


class Writer(asyncio.Protocol):
    def __init__(self) -> None:
        self.flow: LazyFlowControl | None = None
        self.connected = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.flow = LazyFlowControl(transport)
        self.connected.set()

    def pause_writing(self) -> None:
        assert self.flow is not None
        self.flow.pause_writing()

    def resume_writing(self) -> None:
        assert self.flow is not None
        self.flow.resume_writing()


async def test_a_writer_waits_while_the_peer_reads_nothing_and_goes_on_once_it_reads() -> None:
    loop = asyncio.get_running_loop()
    writer = Writer()
    server = await loop.create_server(lambda: writer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    peer = socket.create_connection(("127.0.0.1", port))
    peer.setblocking(False)
    try:
        await asyncio.wait_for(writer.connected.wait(), 5)
        flow = writer.flow
        assert flow is not None
        assert flow._writable is None  # no Event until writing pauses
        chunk = b"x" * 65536
        sent = 0
        while not flow.write_paused:
            flow._transport.write(chunk)
            sent += len(chunk)
        assert flow._writable is not None
        draining = asyncio.ensure_future(flow.drain())
        await asyncio.sleep(0.05)
        assert not draining.done()  # the peer has read nothing
        received = 0
        while not draining.done():
            try:
                received += len(peer.recv(1 << 20))
            except BlockingIOError:
                await asyncio.sleep(0.01)
        await draining
        assert not flow.write_paused
        assert flow._writable is None
        await flow.drain()  # not paused: returns at once
        assert received > 0
    finally:
        peer.close()
        server.close()
        await server.wait_closed()


async def test_corked_writes_leave_together_and_a_large_body_at_once() -> None:
    """A response's writes within one loop iteration leave as one; past CORK_BYTES they leave
    at once, so that the transport's buffer (what pauses a writer) sees them."""
    loop = asyncio.get_running_loop()
    writer = Writer()
    server = await loop.create_server(lambda: writer, "127.0.0.1", 0)
    peer = socket.create_connection(("127.0.0.1", server.sockets[0].getsockname()[1]))
    peer.setblocking(False)
    try:
        await asyncio.wait_for(writer.connected.wait(), 5)
        assert writer.flow is not None
        corked = CorkedTransport(writer.flow._transport, loop)
        corked.write(b"HTTP/1.1 200 OK\r\n\r\n")
        corked.write(b"x" * 100)
        time.sleep(0.05)  # noqa: ASYNC251 - no loop turn: nothing may have left yet
        with pytest.raises(BlockingIOError):
            peer.recv(65536)
        await asyncio.sleep(0.05)  # the loop turns: both writes leave together
        assert len(peer.recv(65536)) == 19 + 100
        corked.write(b"y" * CORK_BYTES)  # large: leaves without waiting for the loop
        time.sleep(0.05)  # noqa: ASYNC251 - still no loop turn
        assert len(peer.recv(1 << 20)) > 0
    finally:
        peer.close()
        server.close()
        await server.wait_closed()
