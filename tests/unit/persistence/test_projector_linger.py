"""The projector's linger counts from the first event's arrival: an event that waited
while the last batch was written is taken at once, with what waited beside it; a fresh
event still gathers what comes within the linger."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from apex_persistence.projection.runner import Arrived, ProjectorRunner
from apex_runtime import Bus, CircuitBreaker, Stored


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def runner(clock: Clock, linger_s: float) -> ProjectorRunner:
    projection = cast(Any, type("P", (), {"name": "test", "failures": ()})())
    return ProjectorRunner(
        cast(Bus, None),
        projection,
        "apex.evt.>",
        CircuitBreaker("test"),
        linger_s=linger_s,
        batch_size=10,
        clock=clock,
    )


def stored(seq: int) -> Stored:
    return Stored(seq, f"apex.evt.t.{seq}", b"{}")


async def test_an_event_that_waited_past_the_linger_is_taken_at_once() -> None:
    clock = Clock()
    queue: asyncio.Queue[Arrived] = asyncio.Queue(maxsize=10)
    for seq in (1, 2, 3):
        queue.put_nowait((clock.now, stored(seq)))
    clock.now += 61  # the last batch's write took longer than the linger
    batch = await asyncio.wait_for(runner(clock, linger_s=60.0)._take(queue), 10)
    assert [d.seq for d in batch] == [1, 2, 3]


async def test_a_fresh_event_gathers_what_arrives_within_the_linger() -> None:
    clock = Clock()
    queue: asyncio.Queue[Arrived] = asyncio.Queue(maxsize=10)
    queue.put_nowait((clock.now, stored(1)))
    taking = asyncio.create_task(runner(clock, linger_s=0.2)._take(queue))
    await asyncio.sleep(0)
    assert not taking.done()  # lingering
    queue.put_nowait((clock.now, stored(2)))
    assert [d.seq for d in await taking] == [1, 2]


async def test_a_full_batch_is_taken_without_lingering() -> None:
    clock = Clock()
    queue: asyncio.Queue[Arrived] = asyncio.Queue(maxsize=10)
    for seq in range(1, 11):
        queue.put_nowait((clock.now, stored(seq)))
    batch = await asyncio.wait_for(runner(clock, linger_s=60.0)._take(queue), 10)
    assert [d.seq for d in batch] == list(range(1, 11))
