"""The ClickHouse projector's deferred checkpoint (real NATS, chdb): batches insert their
events at once and write the checkpoint at most every ``checkpoint_every_s``; the runner
writes it when the log goes quiet and when it stops. The checkpoint is never ahead of
what is applied, and a projector restarted from a lagging one applies that part of the
log again without a row twice."""

from __future__ import annotations

from typing import Any

from apex_persistence.analytics.port import ChdbStore
from apex_persistence.analytics.projector import ClickHouseProjection
from apex_persistence.projection.ports import DefersCheckpoint
from apex_runtime import Bus
from tests.integration.persistence.harness import CountingStore, dump_clickhouse, runner, running, until


async def test_batches_leave_the_checkpoint_until_it_is_due(analytics: ChdbStore, story: Any) -> None:
    now, counted = [100.0], CountingStore(analytics)
    projection = ClickHouseProjection(counted, checkpoint_every_s=1.0, clock=lambda: now[0])  # type: ignore[arg-type]
    first, second, third = (story.deliveries(story.run(), first_seq=1 + n * 100) for n in range(3))
    assert isinstance(projection, DefersCheckpoint)

    await projection.apply(first)  # the first batch always writes it
    assert await projection.position() == first[-1].seq
    await projection.apply(second)
    assert await projection.position() == first[-1].seq  # behind, never ahead
    rows = await dump_clickhouse(analytics)
    assert len(rows["events"]) == len(first) + len(second)  # the events are in at once

    now[0] += 1.0
    await projection.apply(third)
    assert await projection.position() == third[-1].seq
    await projection.flush()  # nothing unsaved: no row
    assert counted.inserts["projection_checkpoints"] == 2


async def test_the_runner_writes_it_when_the_log_goes_quiet(
    bus: Bus, analytics: ChdbStore, story: Any
) -> None:
    projection = ClickHouseProjection(analytics, checkpoint_every_s=3600.0)
    seqs = await story.publish(bus, [*story.run(), *story.run()])
    async with running([runner(bus, projection, linger_s=0.0, batch_size=1)]):
        await until(lambda: _at(projection, seqs[-1]))


async def test_the_runner_writes_it_when_it_stops(bus: Bus, analytics: ChdbStore, story: Any) -> None:
    projection = ClickHouseProjection(analytics, checkpoint_every_s=3600.0)
    events = [*story.run(), *story.run()]
    seqs = await story.publish(bus, events)
    # quiet for 5 s before the runner flushes on its own
    async with running([runner(bus, projection, linger_s=0.0, batch_size=1, wait_s=5.0)]):
        await until(lambda: _rows(analytics, len(events)))
        assert await projection.position() < seqs[-1]
    assert await projection.position() == seqs[-1]


async def test_a_projector_restarted_behind_its_events_applies_them_again_once(
    bus: Bus, analytics: ChdbStore, story: Any
) -> None:
    events = [*story.run(), *story.run(), *story.run()]
    seqs = await story.publish(bus, events)
    first = ClickHouseProjection(analytics, checkpoint_every_s=3600.0)
    await first.apply(story.deliveries(events[:2], first_seq=seqs[0]))
    await first.apply(story.deliveries(events[2:], first_seq=seqs[2]))  # a crash: never flushed
    assert await first.position() == seqs[1]
    before = await dump_clickhouse(analytics)

    again = ClickHouseProjection(analytics, checkpoint_every_s=3600.0)
    async with running([runner(bus, again)]):
        await until(lambda: _at(again, seqs[-1]))
    assert len(before["events"]) == len(events)
    assert await dump_clickhouse(analytics) == before  # applied again, each event still one row


async def _at(projection: ClickHouseProjection, seq: int) -> bool:
    return await projection.position() >= seq


async def _rows(store: ChdbStore, n: int) -> bool:
    return len((await dump_clickhouse(store))["events"]) >= n
