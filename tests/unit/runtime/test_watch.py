"""The subject watch: every message stored after its start, in order, each once, as the
log holds it; and the pool that lets the steps of one run share one."""

from __future__ import annotations

import asyncio

import pytest

from apex_contracts import MessageCreated, MessageCreatedData, Scope, new_id, subjects
from apex_runtime import WatchPool
from apex_runtime.memory import MemoryBus


def _scope() -> Scope:
    return Scope(
        tenant_id=new_id("ten"), user_id=new_id("usr"), thread_id=new_id("thr"), run_id=new_id("run")
    )


async def _say(bus: MemoryBus, scope: Scope, n: int) -> int:
    return await bus.publish_event(
        scope.make(
            MessageCreated,
            MessageCreatedData(message_id=new_id("msg"), content=f"m{n}", client_msg_id=f"c{n}"),
            id=f"m{n}:{scope.run_id}",
        )
    )


@pytest.fixture
async def bus() -> MemoryBus:
    bus = MemoryBus()
    await bus.ensure_topology()
    return bus


async def test_a_watch_holds_what_follows_its_start_and_reads_what_came_before_once(bus: MemoryBus) -> None:
    scope = _scope()
    subject = subjects.thread_events(scope.tenant_id, scope.user_id, scope.thread_id)
    first = await _say(bus, scope, 1)
    async with bus.watch(subject, after_seq=first) as watch:
        second = await _say(bus, scope, 2)
        await watch.through(second, timeout=2.0)
        assert [h.seq for h in watch.after(0)] == [second]
        older = await watch.wait_for(lambda m: m["data"]["content"] == "m1", timeout=1.0, scan_after_seq=0)
        assert older["data"]["content"] == "m1"
        later = asyncio.ensure_future(
            watch.wait_for(lambda m: m["data"]["content"] == "m3", timeout=2.0, scan_after_seq=second)
        )
        await _say(bus, scope, 3)
        assert (await later)["data"]["content"] == "m3"
        with pytest.raises(TimeoutError):
            await watch.wait_for(lambda m: m["data"]["content"] == "m4", timeout=0.05, scan_after_seq=second)


async def test_steps_of_a_run_share_one_watch_until_it_lingered_unused(bus: MemoryBus) -> None:
    scope = _scope()
    subject = subjects.thread_events(scope.tenant_id, scope.user_id, scope.thread_id)
    pool = WatchPool(bus, linger_s=0.1)
    async with pool.watch(subject, 0) as one, pool.watch(subject, 0) as two:
        assert one is two
    async with pool.watch(subject, 0) as again:
        assert again is one, "reused within the linger"
    async with pool.watch(subject, 5) as other:
        assert other is not one, "another start is another watch"
    await asyncio.sleep(0.3)
    assert len(pool) == 0
    async with pool.watch(subject, 0) as fresh:
        assert fresh is not one
    await pool.close()
    assert len(pool) == 0
