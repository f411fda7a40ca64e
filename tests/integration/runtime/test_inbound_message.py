"""A FastStream handler on a real NATS gets its message through ``InboundMessage`` with
no worker thread; through faststream's own ``NatsMessage`` FastDepends resolves it in
one (``anyio.to_thread.run_sync``) for every message, which is why every Apex handler
takes ``InboundMessage``."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio.to_thread
import pytest
from faststream.nats import NatsBroker, NatsMessage

from apex_runtime import InboundMessage


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
