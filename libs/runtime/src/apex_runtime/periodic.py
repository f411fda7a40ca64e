"""Work repeated in the background while a block runs (a lease renewed, a message kept
in progress), stopped for certain when the block ends.

Cancelling the background task is not enough on Python 3.11: ``asyncio.wait_for``, which
nats-py awaits in every request (a key-value write, a JetStream publish), drops a
cancellation that arrives in the same turn of the loop as the reply it waits for
(CPython gh-86296, fixed in 3.12). A renewal loop stopped by ``cancel`` alone then
renews forever, and the block that awaits it never ends: a tool call whose body had
finished kept its claim alive and never wrote its outcome. So the loop also checks a
stop flag after every tick, and a lost cancellation costs at most the tick in hand."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable


@contextlib.asynccontextmanager
async def periodically(
    every_s: float, tick: Callable[[], Awaitable[None]], *, name: str
) -> AsyncIterator[asyncio.Task[None]]:
    """Runs ``tick`` every ``every_s`` seconds while the block runs (first after one
    interval), and yields the task. An exception from ``tick`` ends the task and is
    raised when the block ends; at the end of the block the task is stopped and awaited."""
    stop = asyncio.Event()

    async def repeat() -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(every_s):
                    await stop.wait()
            if stop.is_set():
                return
            await tick()
            if stop.is_set():  # a cancellation lost inside the tick
                return

    task = asyncio.create_task(repeat(), name=name)
    try:
        yield task
    finally:
        stop.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
