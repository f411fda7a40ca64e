"""The contract every projection (``apex_persistence.projection.ports.Projection``) keeps,
written once and run against each store by subclassing ``ProjectionContract``
(``test_projection_contract.py``: Postgres, Redis, ClickHouse on chdb).

What a subclass provides is a ``store`` fixture: a ``StoreUnderTest`` over a real server
in the test's own namespace. The properties:

- each event is applied exactly once: the view holds every event of the log once, and
  the same view comes out however the log is cut into batches;
- redelivery is a no-op: every event again, twice, shuffled, in random batches, on top
  of the view or from empty, gives the same view;
- the tracking record never runs ahead of the view: a store failure after the view's
  writes and before the checkpoint leaves the checkpoint where it was (and, for a store
  that writes a batch in one transaction, the view too), and the batch redelivered
  gives the exact view;
- a restart resumes from the tracked seq: a new instance reads the checkpoint the last
  one wrote, and runners killed between their write and their ack, again and again,
  leave the view a single delivery of the log gives.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar, Protocol

import pytest

from apex_persistence.projection.delivery import Delivery
from apex_persistence.projection.ports import Projection
from apex_runtime import Bus
from tests.integration.persistence.harness import runner, running, until_caught_up


class StoreUnderTest(Protocol):
    """One store's side of the contract, in the test's own namespace."""

    def projection(self) -> Projection:
        """A new projection over the store: what a restarted process builds."""
        ...

    async def dump(self) -> Any:
        """Every view row or key the projection wrote (tracking records aside), comparable
        with ``==``."""
        ...

    async def count_events(self) -> int:
        """How many events the view holds (each event counted once per copy stored)."""
        ...

    async def clear(self) -> None:
        """Views and tracking records as before the first event."""
        ...

    def checkpoint_fails(self, projection: Projection) -> contextlib.AbstractContextManager[None]:
        """While open, ``projection.apply`` makes the view's writes and then fails with one
        of ``projection.failures`` when it records the checkpoint."""
        ...


class DiesAfterWrite:
    """Writes the batch, then hangs until it is killed: the crash between write and ack."""

    def __init__(self, inner: Projection) -> None:
        self.inner = inner
        self.name = inner.name
        self.failures = inner.failures
        self.written = asyncio.Event()

    async def position(self) -> int:
        return await self.inner.position()

    async def apply(self, batch: Sequence[Delivery]) -> None:
        await self.inner.apply(batch)
        self.written.set()
        await asyncio.Event().wait()


class ProjectionContract:
    """Subclass per store and define the ``store`` fixture."""

    # True when a batch's view writes and its checkpoint commit together (one transaction).
    atomic_batches: ClassVar[bool] = False

    @pytest.fixture
    def store(self) -> Iterator[StoreUnderTest]:
        raise NotImplementedError("a ProjectionContract subclass defines the store fixture")

    async def once(self, store: StoreUnderTest, batch: list[Delivery]) -> Any:
        """The view of one delivery of each event, from empty, in batches of 10."""
        await store.clear()
        projection = store.projection()
        for start in range(0, len(batch), 10):
            await projection.apply(batch[start : start + 10])
        return await store.dump()

    async def test_each_event_is_applied_exactly_once(self, store: StoreUnderTest, story: Any) -> None:
        events = story.threads(count=3, runs_per_thread=2)
        batch = story.deliveries(events)
        in_tens = await self.once(store, batch)
        assert await store.count_events() == len(events)
        assert await store.projection().position() == len(batch)

        await store.clear()
        await store.projection().apply(batch)
        assert await store.dump() == in_tens, "one batch and batches of ten differ"
        assert await store.count_events() == len(events)

    async def test_redelivery_is_a_noop(self, store: StoreUnderTest, story: Any) -> None:
        batch = story.deliveries(story.threads(count=3, runs_per_thread=2))
        expected = await self.once(store, batch)
        projection = store.projection()
        for chunk in story.chaotic(batch):  # on top of the view
            await projection.apply(chunk)
        assert await store.dump() == expected
        await store.clear()
        for chunk in story.chaotic(batch, seed=11):  # from empty
            await projection.apply(chunk)
        assert await store.dump() == expected
        assert await store.count_events() == len(batch)
        assert await projection.position() == len(batch)

    async def test_the_tracking_record_never_runs_ahead_of_the_view(
        self, store: StoreUnderTest, story: Any
    ) -> None:
        first, second = story.run(), story.run(tools=3)
        batch = story.deliveries(first + second)
        expected = await self.once(store, batch)
        await store.clear()
        projection = store.projection()
        await projection.apply(batch[: len(first)])
        before = await store.dump()

        with store.checkpoint_fails(projection), pytest.raises(projection.failures):
            await projection.apply(batch[len(first) :])
        assert await projection.position() == len(first), "the checkpoint moved without its batch"
        if self.atomic_batches:
            assert await store.dump() == before, "the view moved without its checkpoint"

        await projection.apply(batch[len(first) :])  # the batch redelivered
        assert await store.dump() == expected
        assert await projection.position() == len(batch)

    async def test_a_restart_resumes_from_the_tracked_seq(
        self, store: StoreUnderTest, bus: Bus, story: Any
    ) -> None:
        events = story.threads(count=3, runs_per_thread=2)
        half = len(events) // 2
        expected = await self.once(store, story.deliveries(events))
        await store.clear()

        await story.publish(bus, events[:half])
        first = runner(bus, store.projection())
        async with running([first]):
            await until_caught_up(bus, [first])
        assert await store.projection().position() == half  # what the next process starts from

        await story.publish(bus, events[half:])
        for _kill in range(3):  # killed between the write and the ack, three times running
            doomed = DiesAfterWrite(store.projection())
            task = asyncio.create_task(runner(bus, doomed, batch_size=5).run(asyncio.Event()))
            await asyncio.wait_for(doomed.written.wait(), 15)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert await store.projection().position() > half

        survivor = runner(bus, store.projection())
        async with running([survivor]):
            await until_caught_up(bus, [survivor])
        assert survivor.position == len(events)
        assert await store.dump() == expected
        assert await store.count_events() == len(events)
