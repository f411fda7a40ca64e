"""How a gateway stops: every open stream (WebSocket or Server-Sent Events) is ended
with ``shutting_down``, paced over ``APEX_GATEWAY_DRAIN_S`` so that the clients of a
whole pod do not come back to the others in the same instant, and the streams' clients
resume elsewhere from their last seq (WebSocket: close 1012; SSE: a final
``shutting_down`` event, then ``Last-Event-ID``).

A stream registers itself while it is open; ``paced_closes`` is the schedule; the
composition root runs the drain after readiness has gone false."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, TypeVar

import orjson

from apex_contracts import ErrorCode
from apex_contracts.errors import CATALOGUE

log = logging.getLogger(__name__)
T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class Gettable(Protocol[T_co]):
    """What a stream reads from: an ``asyncio.Queue`` or a connection ``Outbox``."""

    async def get(self) -> T_co: ...


class StreamDrained(Exception):
    """The gateway is stopping: this stream must end now."""


class OpenStreams:
    """The SSE streams of this gateway, each with the event that ends it."""

    def __init__(self) -> None:
        self._ends: set[asyncio.Event] = set()
        self.stopping = False

    def __len__(self) -> int:
        return len(self._ends)

    def open(self) -> asyncio.Event:
        end = asyncio.Event()
        if self.stopping:
            end.set()  # a stream opened during the drain ends at once
        self._ends.add(end)
        return end

    def close(self, end: asyncio.Event) -> None:
        self._ends.discard(end)

    def all(self) -> list[asyncio.Event]:
        return list(self._ends)


async def next_or_end(queue: Gettable[T], end: asyncio.Event, timeout_s: float) -> T | None:
    """The next item; None after ``timeout_s`` without one; StreamDrained once ``end`` is set."""
    if end.is_set():
        raise StreamDrained
    getter = asyncio.ensure_future(queue.get())
    ender = asyncio.ensure_future(end.wait())
    try:
        done, _ = await asyncio.wait({getter, ender}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        ender.cancel()
        if not getter.done():
            getter.cancel()
    if getter in done:
        return getter.result()
    if ender in done:
        raise StreamDrained
    return None


def sse_shutting_down(retry_ms: int) -> bytes:
    """The last frame of an SSE stream: the typed error, and how long the browser's
    EventSource waits before it reconnects (spread by the caller)."""
    spec = CATALOGUE[ErrorCode.SHUTTING_DOWN]
    body = orjson.dumps(
        {"code": ErrorCode.SHUTTING_DOWN.value, "message": spec.message, "retryable": spec.retryable}
    )
    return b"retry: %d\nevent: error\ndata: %s\n\n" % (max(0, retry_ms), body)


def paced_closes(count: int, window_s: float) -> list[float]:
    """When (seconds after the drain starts) each of ``count`` streams is ended: evenly
    over the window, the first at once; with no window, all at once."""
    if count <= 0:
        return []
    if window_s <= 0 or count == 1:
        return [0.0] * count
    step = window_s / count
    return [i * step for i in range(count)]


async def drain_paced(
    closers: Sequence[Callable[[], Awaitable[None]]], window_s: float, *, shuffle: bool = True
) -> int:
    """Runs each closer at its slot of ``paced_closes``; returns how many ran. The order
    is shuffled so that no user is always the last to move."""
    order = list(closers)
    if shuffle:
        random.shuffle(order)
    loop = asyncio.get_running_loop()
    start = loop.time()
    pending: list[asyncio.Task[None]] = []
    for at, close in zip(paced_closes(len(order), window_s), order, strict=True):
        delay = start + at - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        pending.append(asyncio.ensure_future(close()))
    results = await asyncio.gather(*pending, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
            log.warning("a stream did not close cleanly during the drain: %r", result)
    return len(order)
