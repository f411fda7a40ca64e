"""``asyncio.wait_for`` as Python 3.12 has it, put in place on 3.11 by every service's
entry point (``ops.run_process``) and by the test session.

CPython 3.11's ``wait_for`` awaits a second future of its own and, when a cancellation
arrives in the same turn of the loop as the result it waits for, returns the result and
drops the cancellation (gh-86296). nats-py awaits ``asyncio.wait_for`` in every request:
each JetStream publish, key-value read or write and API call. A task cancelled during
one (a run's work interrupted by ``run.cancel``, a renewal loop at the end of its block,
a service shutting down) went on as if never cancelled. 3.12 rewrote ``wait_for`` on
``asyncio.timeout``: the awaiting task waits on the future itself, so a cancellation
that meets the result is raised at the next step, as for any other await. asyncpg ships
the same backport for its own calls (``asyncpg._asyncio_compat``); this one is installed
for every library that calls ``asyncio.wait_for``.

``periodically`` (apex_runtime.periodic) also checks a stop flag after every tick, so
its loops stop even where this is not installed."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")

# The interpreter's own, kept for the tests that show what it does.
stock_wait_for = asyncio.tasks.wait_for


async def wait_for(aw: Awaitable[T], timeout: float | None) -> T:
    """Waits for ``aw`` (a future, task or coroutine) for at most ``timeout`` seconds
    (None: without limit); on timeout cancels it and raises TimeoutError. A cancellation
    of the caller is never dropped, whatever else is ready in the same turn."""
    if timeout is not None and timeout <= 0:
        future = asyncio.ensure_future(aw)
        if future.done():
            return future.result()
        future.cancel()
        await asyncio.wait({future})
        try:
            return future.result()
        except asyncio.CancelledError as exc:
            raise TimeoutError from exc
    async with asyncio.timeout(timeout):
        return await aw


def install() -> bool:
    """Puts ``wait_for`` in place of ``asyncio.wait_for`` before 3.12 (where the
    interpreter's own already behaves so); True when it did."""
    if sys.version_info >= (3, 12):
        return False
    asyncio.wait_for = wait_for  # type: ignore[assignment]
    asyncio.tasks.wait_for = wait_for  # type: ignore[assignment]
    return True
