"""A nats-py request on a real NATS whose task is cancelled in the very turn its reply is
handled: with the ``wait_for`` the services install (``apex_runtime.waitfor``) the task
ends cancelled; with Python 3.11's own it went on as if never cancelled (what kept a
tool call's claim renewed forever, and let interrupted work run on)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from apex_runtime import waitfor


@pytest.fixture
async def nc(server_factory: Any) -> AsyncIterator[NATS]:
    client = await nats.connect(server_factory("nats").url)
    yield client
    await client.close()


async def _cancelled_as_the_reply_lands(
    nc: NATS, wait_for: Callable[[Any, float | None], Awaitable[Any]]
) -> str:
    """Runs one request with ``wait_for`` as ``asyncio.wait_for`` and cancels its task from
    a callback of the reply's future: the same turn as the reply. The task's outcome."""
    asked = asyncio.Event()

    async def answer(msg: Msg) -> None:
        asked.set()  # the requester is waiting by now
        await asyncio.sleep(0.01)
        await msg.respond(b"ok")

    responder = await nc.subscribe("svc.echo", cb=answer)
    installed = asyncio.wait_for
    asyncio.wait_for = wait_for  # type: ignore[assignment]
    try:

        async def caller() -> str:
            await nc.request("svc.echo", b"", timeout=5)
            await asyncio.sleep(0)  # the next await of work that goes on
            return "went on"

        task = asyncio.ensure_future(caller())
        await asked.wait()
        (reply,) = nc._resp_map.values()  # the request's future, private to nats-py
        reply.add_done_callback(lambda _: task.cancel())
        done, _ = await asyncio.wait({task}, timeout=5)
        assert done
        return "cancelled" if task.cancelled() else task.result()
    finally:
        asyncio.wait_for = installed  # type: ignore[assignment]
        await responder.unsubscribe()


async def test_a_request_cancelled_as_its_reply_lands_ends_cancelled(nc: NATS) -> None:
    assert await _cancelled_as_the_reply_lands(nc, waitfor.wait_for) == "cancelled"


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="CPython 3.12 keeps the cancellation")
async def test_with_the_interpreters_own_it_went_on(nc: NATS) -> None:
    assert await _cancelled_as_the_reply_lands(nc, waitfor.stock_wait_for) == "went on"
