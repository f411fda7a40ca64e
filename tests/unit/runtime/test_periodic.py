"""Background work repeated while a block runs stops when the block ends, even when the
cancellation that stops it is lost inside Python 3.11's own ``asyncio.wait_for`` (which
nats-py awaits in every request; the services replace it, ``apex_runtime.waitfor``, and
this guard holds without that): the lost cancellation is what kept a tool call's claim
renewed forever."""

from __future__ import annotations

import asyncio
import sys

import pytest

from apex_runtime.periodic import periodically
from apex_runtime.waitfor import stock_wait_for


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="CPython 3.12 keeps the cancellation")
async def test_wait_for_drops_a_cancellation_that_meets_its_reply() -> None:
    reply: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    request = asyncio.create_task(stock_wait_for(reply, 5))
    await asyncio.sleep(0)
    reply.set_result(7)
    request.cancel()
    assert await request == 7, "the cancellation was kept: the guard in periodic.py is moot"


async def test_the_work_stops_when_its_cancellation_is_lost_in_a_reply() -> None:
    loop = asyncio.get_running_loop()
    replies: list[asyncio.Future[None]] = []
    asked = asyncio.Event()

    async def request() -> None:  # a request as nats-py makes it on a stock 3.11
        replies.append(loop.create_future())
        asked.set()
        await stock_wait_for(replies[-1], 5)

    async with asyncio.timeout(2):
        async with periodically(0.01, request, name="renewal") as task:
            await asked.wait()
            replies[0].set_result(None)  # the reply lands as the block ends
        assert task.done() and not task.cancelled()
    assert len(replies) == 1


async def test_the_work_repeats_while_the_block_runs_and_its_failure_is_raised() -> None:
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        ticks += 1
        if ticks == 3:
            raise LookupError("taken over")

    with pytest.raises(LookupError):
        async with periodically(0.001, tick, name="renewal") as task:
            await asyncio.wait({task})
    assert ticks == 3


async def test_nothing_runs_before_the_first_interval() -> None:
    ticks: list[None] = []

    async def tick() -> None:
        ticks.append(None)

    async with periodically(60, tick, name="renewal"):
        await asyncio.sleep(0.01)
    assert ticks == []
