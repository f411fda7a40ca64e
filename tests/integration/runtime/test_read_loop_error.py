"""A connection whose read loop meets an error nats-py has no branch for reconnects and
answers again. With nats-py's own loop it logged "nats: encountered error" and stopped
reading while still reported as connected (nats.py#914): every later request of the
connection timed out."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg

from apex_cli.embedded import EmbeddedServer
from apex_runtime.natsclient import mend_client, read_loop


async def test_a_read_loop_broken_by_an_unexpected_error_reconnects(
    server_factory: Callable[[str], EmbeddedServer],
) -> None:
    mend_client()
    assert Client._read_loop is read_loop
    server = server_factory("nats")
    reconnected = asyncio.Event()

    async def on_reconnected() -> None:
        reconnected.set()

    victim = await nats.connect(server.url, reconnect_time_wait=0.1, reconnected_cb=on_reconnected)
    peer = await nats.connect(server.url)
    try:

        async def echo(msg: Msg) -> None:
            await msg.respond(msg.data)

        await peer.subscribe("apex.test.echo", cb=echo)
        await victim.subscribe("apex.test.poke")
        await peer.flush()
        await victim.flush()

        parse = victim._ps.parse
        broken = False

        async def parse_once_broken(data: bytes) -> None:
            nonlocal broken
            if not broken:
                broken = True
                raise RuntimeError("a bug met while reading")
            await parse(data)

        victim._ps.parse = parse_once_broken  # type: ignore[method-assign]
        await peer.publish("apex.test.poke", b"read me")
        await asyncio.wait_for(reconnected.wait(), 15)  # hang guard: without the fix it never comes
        assert broken
        reply = await victim.request("apex.test.echo", b"still here", timeout=5)
        assert reply.data == b"still here"
    finally:
        await victim.close()
        await peer.close()
