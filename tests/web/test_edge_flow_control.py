"""The edge's flow control: uvicorn's, with its Event made only while writing is paused.

Driven by a real asyncio transport over loopback: a peer that does not read fills the
socket's buffers, the transport pauses the protocol, and a writer waiting in ``drain`` goes
on once the peer reads.
"""

from __future__ import annotations

import asyncio
import socket

from idenfy_stepup.web.edge import LazyFlowControl


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
