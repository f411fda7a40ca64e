"""A FastStream handler on a real NATS gets its message through ``InboundMessage`` with
no worker thread; through faststream's own ``NatsMessage`` FastDepends resolves it in
one (``anyio.to_thread.run_sync``) for every message, which is why every Apex handler
takes ``InboundMessage``. A handler that validates ``msg.body`` itself takes the
``undecoded`` decoder: FastStream's own would parse every body first."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio.to_thread
import pytest
from faststream.nats import NatsBroker, NatsMessage

from apex_runtime import InboundMessage, undecoded


async def _handle_one(url: str, annotation: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[bytes, int]:
    """Publishes one message to a handler taking ``msg: annotation``: (the body it saw,
    how many calls went to a worker thread meanwhile)."""
    threaded = 0
    run_sync = anyio.to_thread.run_sync

    async def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal threaded
        threaded += 1
        return await run_sync(*args, **kwargs)

    broker = NatsBroker(url)
    seen: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def handler(msg: Any) -> None:
        seen.set_result(msg.body)

    handler.__annotations__["msg"] = annotation
    broker.subscriber("apex.test.inbound")(handler)
    async with broker:
        await broker.start()
        monkeypatch.setattr(anyio.to_thread, "run_sync", counting)
        await broker.publish(b"hello", "apex.test.inbound")
        body = await asyncio.wait_for(seen, 10)
        monkeypatch.setattr(anyio.to_thread, "run_sync", run_sync)
    return body, threaded


async def test_inbound_message_is_resolved_on_the_loop(
    server_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    body, threaded = await _handle_one(server_factory("nats").url, InboundMessage, monkeypatch)
    assert body == b"hello" and threaded == 0


async def test_faststreams_own_annotation_takes_a_worker_thread(
    server_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    body, threaded = await _handle_one(server_factory("nats").url, NatsMessage, monkeypatch)
    assert body == b"hello"
    assert threaded >= 1, "faststream resolves NatsMessage on the loop now: InboundMessage can go"


async def _bodies_parsed(url: str, decoder: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[bytes, int]:
    """Publishes one JSON message to a handler reading ``msg.body`` with ``decoder``: (the
    body it saw, how many times FastStream parsed a body meanwhile)."""
    import faststream.message.utils as message_utils

    parsed = 0
    loads = message_utils.json_loads

    def counting(data: Any) -> Any:
        nonlocal parsed
        parsed += 1
        return loads(data)

    broker = NatsBroker(url)
    seen: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def handler(msg: InboundMessage) -> None:
        seen.set_result(msg.body)

    broker.subscriber("apex.test.undecoded", decoder=decoder)(handler)
    async with broker:
        await broker.start()
        monkeypatch.setattr(message_utils, "json_loads", counting)
        await broker.publish(b'{"rows": [1, 2, 3]}', "apex.test.undecoded")
        body = await asyncio.wait_for(seen, 10)
    return body, parsed


async def test_an_undecoded_handler_gets_its_body_unparsed(
    server_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    body, parsed = await _bodies_parsed(server_factory("nats").url, undecoded, monkeypatch)
    assert body == b'{"rows": [1, 2, 3]}' and parsed == 0


async def test_faststreams_own_decoder_parses_every_body(
    server_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    body, parsed = await _bodies_parsed(server_factory("nats").url, None, monkeypatch)
    assert body == b'{"rows": [1, 2, 3]}'
    assert parsed == 1, "faststream no longer parses a body nobody asks for: undecoded can go"
