"""A flush whose PONG comes after it gave up (the server paused past its timeout) leaves
the connection working once the server is back. With nats-py's own PONG handler the
late PONG ended the read loop and every later request timed out: what wedged a paused
orchestrator in the degraded-mode test. (That outcome was checked by hand with nats-py's
handler put back; it is not a test here, because the deaf connection it leaves cannot
be closed cleanly.)"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import nats
import nats.errors
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from apex_cli.embedded import EmbeddedServer
from apex_runtime.natsclient import answer_pong, mend_client


@pytest.fixture
def server(server_factory: Callable[[str], EmbeddedServer]) -> EmbeddedServer:
    return server_factory("nats")  # its own: it is paused


@pytest.fixture
async def restore_handler() -> AsyncIterator[None]:
    installed = Client._process_pong
    yield
    Client._process_pong = installed  # type: ignore[method-assign]


async def _late_pong_then_request(server: EmbeddedServer) -> bytes:
    nc = await nats.connect(server.url, max_reconnect_attempts=0)

    async def echo(msg: Msg) -> None:
        await msg.respond(msg.data)

    await nc.subscribe("apex.test.echo", cb=echo)
    await nc.flush()
    server.pause()  # returns once the server has stopped, so the flush's PING waits
    try:
        with pytest.raises(nats.errors.FlushTimeoutError):
            await nc.flush(timeout=0.3)
    finally:
        server.resume()
    try:
        reply = await nc.request("apex.test.echo", b"still here", timeout=3)
        return bytes(reply.data)
    finally:
        await nc.close()


async def test_a_late_pong_leaves_the_connection_answering(
    server: EmbeddedServer, restore_handler: None
) -> None:
    mend_client()
    assert Client._process_pong is answer_pong
    assert await _late_pong_then_request(server) == b"still here"
