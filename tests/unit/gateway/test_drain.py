"""A draining gateway ends its streams evenly over the window, the first at once."""

from __future__ import annotations

import asyncio
import math
import random

from hypothesis import given
from hypothesis import strategies as st

from apex_gateway.drain import OpenStreams, StreamDrained, next_or_end, paced_closes, sse_shutting_down
from apex_gateway.reconnect import reconnect_spread_ms


@given(count=st.integers(0, 5000), window=st.floats(0, 300))
def test_closes_are_spread_evenly_over_the_window(count: int, window: float) -> None:
    at = paced_closes(count, window)
    assert len(at) == count
    assert all(0 <= t < max(window, 1e-9) or t == 0 for t in at)
    assert at == sorted(at)
    if count > 1 and window > 0:
        step = window / count
        gaps = [b - a for a, b in zip(at, at[1:], strict=False)]
        assert all(math.isclose(gap, step, rel_tol=1e-9, abs_tol=1e-12) for gap in gaps)


async def test_a_stream_ends_when_the_drain_starts() -> None:
    streams = OpenStreams()
    end = streams.open()
    queue: asyncio.Queue[int] = asyncio.Queue()
    await queue.put(1)
    assert await next_or_end(queue, end, 1.0) == 1
    assert await next_or_end(queue, end, 0.01) is None  # nothing yet: a keep-alive
    end.set()
    try:
        await next_or_end(queue, end, 1.0)
    except StreamDrained:
        pass
    else:
        raise AssertionError("the drain must end the stream")
    streams.stopping = True
    assert streams.open().is_set(), "a stream opened during the drain ends at once"


def test_the_last_sse_frame_is_a_typed_error_with_a_spread_retry() -> None:
    frame = sse_shutting_down(1234).decode()
    assert frame.startswith("retry: 1234\nevent: error\n")
    assert '"code":"shutting_down"' in frame and '"retryable":true' in frame
    rng = random.Random(3)
    spread = [reconnect_spread_ms(10.0, rng) for _ in range(1000)]
    assert min(spread) >= 0 and max(spread) <= 10_000 and max(spread) - min(spread) > 9000
