"""The ClickHouse projector's tombstones kept per version of ``erasures`` (real NATS KV and
chdb): a batch is checked against the tombstones in memory while no replica recorded
one; a tombstone recorded by another replica is seen by the next batch; whatever the
batches and replicas, the view is the one of projectors that ask ClickHouse every time."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apex_persistence.analytics.port import ChdbStore
from apex_persistence.analytics.projector import ClickHouseProjection
from apex_persistence.analytics.versions import ERASURES, BusVersions
from apex_runtime import Bus
from tests.integration.persistence.harness import CountingStore, dump_clickhouse


async def clear(store: ChdbStore) -> None:
    for table in ("events", "projection_checkpoints", "erased_threads", "erased_users"):
        await store.command(f"TRUNCATE TABLE $db.{table}")


async def test_a_tombstone_recorded_by_one_replica_reaches_the_others_next_batch(
    bus: Bus, analytics: ChdbStore, story: Any
) -> None:
    await clear(analytics)
    versions = BusVersions(bus)
    counted = CountingStore(analytics)
    a = ClickHouseProjection(counted, versions=versions)  # type: ignore[arg-type]
    b = ClickHouseProjection(analytics, versions=versions)
    doomed = story.run()
    thread_id, run_id = doomed[0].thread_id, str(doomed[0].run_id)
    later = story.run(thread_id)  # the same thread, after the tombstone
    going = story.run(thread_id)  # a run the tombstone names: its later events go too
    events = [*doomed, story.delete(thread_id, erase=True, runs=[str(going[0].run_id)]), *later, *going]
    batch = story.deliveries(events)
    tombstone_at = len(doomed) + 1

    await a.apply(batch[:2])
    await a.apply(batch[2:4])
    assert counted.selects == 1  # the tombstones once, then from memory

    before = await versions.current(ERASURES)
    await b.apply(batch[tombstone_at - 1 : tombstone_at])  # replica b records the tombstone
    assert await versions.current(ERASURES) > before

    await a.apply(batch)  # a redelivers everything: the covered events are dropped
    seen = await analytics.select("SELECT run_id, seq FROM $db.events FINAL ORDER BY seq", {})
    assert {row["run_id"] for row in seen} == {str(later[0].run_id)}
    assert all(int(row["seq"]) > tombstone_at for row in seen)
    assert run_id not in {row["run_id"] for row in seen}


async def test_kept_tombstones_give_the_view_of_asking_every_time(
    bus: Bus, analytics: ChdbStore, story: Any
) -> None:
    doomed, spared = story.run(), story.run()
    thread_id = doomed[0].thread_id
    going = story.run(thread_id)
    events = [*doomed, *spared, story.delete(thread_id, erase=True, runs=[str(going[0].run_id)]), *going]
    events += [story.erase_user(), *story.run()]
    batch = story.deliveries(events)

    async def project(versions: BusVersions | None, cuts: list[int], replicas: list[bool]) -> Any:
        await clear(analytics)
        pair = [ClickHouseProjection(analytics, versions=versions) for _ in range(2)]
        start, n = 0, 0
        while start < len(batch):  # cut into batches, each applied by one of two replicas
            size = cuts[n % len(cuts)]
            await pair[int(replicas[n % len(replicas)])].apply(batch[start : start + size])
            start, n = start + size, n + 1
        await pair[0].apply(batch)  # and everything once more, redelivered
        view = await dump_clickhouse(analytics)
        return {k: v for k, v in view.items() if k != "projection_checkpoints"}

    cases: list[tuple[list[int], list[bool]]] = []

    @settings(max_examples=12, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(
        cuts=st.lists(st.integers(1, 8), min_size=1, max_size=10),
        replicas=st.lists(st.booleans(), min_size=1, max_size=10),
    )
    def generate(cuts: list[int], replicas: list[bool]) -> None:
        cases.append((cuts, replicas))

    generate()  # the stores are async: the generated cases run below, each both ways
    for cuts, replicas in cases:
        kept = await project(BusVersions(bus), cuts, replicas)
        assert kept == await project(None, cuts, replicas)
        rows = str(kept["events"])
        assert str(doomed[0].run_id) not in rows and str(going[0].run_id) not in rows
        assert str(spared[0].run_id) not in rows  # the user's erasure took the rest
