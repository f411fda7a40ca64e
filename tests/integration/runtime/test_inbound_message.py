"""A FastStream handler on a real NATS gets its message through ``InboundMessage`` with
no worker thread; through faststream's own ``NatsMessage`` FastDepends resolves it in
one (``anyio.to_thread.run_sync``) for every message, which is why every Apex handler
takes ``InboundMessage``. A handler that validates ``msg.body`` itself takes the
``undecoded`` decoder: FastStream's own would parse every body first."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import anyio.to_thread
import faststream.message.utils as message_utils
import pytest
from faststream.nats import NatsBroker, NatsMessage

from apex_runtime import InboundMessage, undecoded


async def _one_message(
    url: str,
    monkeypatch: pytest.MonkeyPatch,
    watch: Callable[[pytest.MonkeyPatch], None],
    *,
    annotation: Any = InboundMessage,
    decoder: Any = None,
    body: bytes = b"hello",
) -> bytes:
    """Publishes ``body`` to a handler taking ``msg: annotation`` (FastStream's decoder
    unless ``decoder``); ``watch`` patches what to count while it is handled (after the
    broker started, undone before it closes). Returns the body the handler saw."""
    broker = NatsBroker(url)
    seen: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def handler(msg: Any) -> None:
        seen.set_result(msg.body)

    handler.__annotations__["msg"] = annotation
    broker.subscriber("apex.test.inbound", decoder=decoder)(handler)
    async with broker:
        await broker.start()
        with monkeypatch.context() as patch:
            watch(patch)
            await broker.publish(body, "apex.test.inbound")
            return await asyncio.wait_for(seen, 10)


async def _threads(url: str, annotation: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[bytes, int]:
    """(the body the handler saw, how many calls went to a worker thread meanwhile)."""
    threaded = 0
    run_sync = anyio.to_thread.run_sync

    async def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal threaded
        threaded += 1
        return await run_sync(*args, **kwargs)

    body = await _one_message(
        url,
        monkeypatch,
        lambda patch: patch.setattr(anyio.to_thread, "run_sync", counting),
        annotation=annotation,
    )
    return body, threaded


async def _parses(url: str, decoder: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[bytes, int]:
    """(the body the handler saw, how many bodies FastStream parsed meanwhile)."""
    parsed = 0
    loads = message_utils.json_loads

    def counting(data: Any) -> Any:
        nonlocal parsed
        parsed += 1
        return loads(data)

    body = await _one_message(
        url,
        monkeypatch,
        lambda patch: patch.setattr(message_utils, "json_loads", counting),
        decoder=decoder,
        body=JSON,
    )
    return body, parsed


JSON = b'{"rows": [1, 2, 3]}'


async def test_inbound_message_is_resolved_on_the_loop(
    server_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    body, threaded = await _threads(server_factory("nats").url, InboundMessage, monkeypatch)
    assert body == b"hello" and threaded == 0


async def test_faststreams_own_annotation_takes_a_worker_thread(
    server_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    body, threaded = await _threads(server_factory("nats").url, NatsMessage, monkeypatch)
    assert body == b"hello"
    assert threaded >= 1, "faststream resolves NatsMessage on the loop now: InboundMessage can go"


async def test_an_undecoded_handler_gets_its_body_unparsed(
    server_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    body, parsed = await _parses(server_factory("nats").url, undecoded, monkeypatch)
    assert body == JSON and parsed == 0


async def test_faststreams_own_decoder_parses_every_body(
    server_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    body, parsed = await _parses(server_factory("nats").url, None, monkeypatch)
    assert body == JSON
    assert parsed == 1, "faststream no longer parses a body nobody asks for: undecoded can go"
