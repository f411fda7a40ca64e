"""The usage ledger's commit and the leases under it, on a NATS of their own and without
persistence: a batch still waiting to be stored counts as committed for the next upload
(the store cannot even be asked here), two committers on two connections never both
take a record, an upload keeps the lease between its batches until it ends, and a
lease is exclusive, renewed, released and taken over only once
its holder let it expire."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from apex_contracts import UsageRecord, new_id
from apex_contracts.streams import KV_LEASES
from apex_ingest.commit import UsageCommitter
from apex_runtime import Bus
from apex_runtime.leases import Leases


@pytest.fixture(scope="module")
async def bare_bus(server_factory: Callable[[str], Any]) -> AsyncIterator[Callable[[], Any]]:
    """Connections to a NATS with the topology and nobody consuming usage batches."""
    nats = server_factory("nats")
    opened: list[Bus] = []

    async def connect() -> Bus:
        bus = await Bus.connect(nats.url, f"commit-test-{len(opened)}")
        await bus.ensure_topology()
        opened.append(bus)
        return bus

    yield connect
    for bus in opened:
        await bus.close()


def records(count: int, tag: str) -> list[UsageRecord]:
    start = datetime(2026, 1, 5, tzinfo=UTC)
    return [
        UsageRecord(
            ts=start + timedelta(seconds=n),
            provider="openai",
            model="gpt-4o",
            prompt_tokens=100 + n,
            completion_tokens=10,
            workload=tag,
            request_id=f"{tag}-{n}" if n % 3 else None,
        )
        for n in range(count)
    ]


async def committer(bus: Bus, holder: str) -> UsageCommitter:
    return UsageCommitter(bus, Leases(await bus.bucket(KV_LEASES), holder))


async def test_a_waiting_batch_counts_as_committed(bare_bus: Callable[[], Any]) -> None:
    bus = await bare_bus()
    ledger = await committer(bus, "a")
    tenant = new_id("ten")
    batch = records(500, "wait")
    first = ledger.begin(tenant, None, new_id("upl"), "ndjson")
    assert (await ledger.commit(first, batch)).accepted == 500
    again = ledger.begin(tenant, None, new_id("upl"), "ndjson")
    outcome = await ledger.commit(again, [*batch, *records(3, "fresh")])
    assert (outcome.accepted, outcome.duplicates) == (3, 500)
    assert again.duplicates_checked is False, "nobody could say what the store holds"
    other_tenant = ledger.begin(new_id("ten"), None, new_id("upl"), "ndjson")
    assert (await ledger.commit(other_tenant, batch)).accepted == 500, "tenants never share keys"


async def test_an_upload_keeps_the_lease_between_its_batches_until_it_ends(
    bare_bus: Callable[[], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    mine, theirs = await committer(await bare_bus(), "mine"), await committer(await bare_bus(), "theirs")
    tenant = new_id("ten")
    upload = mine.begin(tenant, None, new_id("upl"), "ndjson")
    await mine.commit(upload, records(10, "one"), keep=True)
    lease = upload._lease
    assert lease is not None and not lease.lost
    other = theirs.begin(tenant, None, new_id("upl"), "ndjson")
    waiting = asyncio.create_task(theirs.commit(other, records(10, "two")))
    await mine.commit(upload, records(10, "three"), keep=True)
    assert upload._lease is lease, "the next batch is committed under the lease already held"
    await asyncio.sleep(0.3)
    assert not waiting.done(), "another upload of the tenant waits while the lease is kept"
    await mine.end(upload)
    assert (await asyncio.wait_for(waiting, 30)).accepted == 10 and other._lease is None

    monkeypatch.setattr("apex_ingest.commit.LEASE_HOLD_S", 0.0)
    await mine.commit(upload, records(10, "four"), keep=True)
    assert upload._lease is None, "kept past LEASE_HOLD_S, the lease is given back"


async def test_two_committers_never_both_take_a_record(bare_bus: Callable[[], Any]) -> None:
    ledgers = [await committer(await bare_bus(), holder) for holder in ("left", "right")]
    tenant = new_id("ten")
    batch = records(300, "race")

    async def upload(ledger: UsageCommitter, part: int) -> int:
        commits = ledger.begin(tenant, None, new_id("upl"), "ndjson")
        taken = 0
        for start in range(part * 50, 300, 100):  # overlapping slices, interleaved
            taken += (await ledger.commit(commits, batch[start : start + 100])).accepted
        return taken

    taken = await asyncio.gather(*(upload(ledgers[i % 2], i % 2) for i in range(6)))
    assert sum(taken) == 300


async def test_a_lease_is_exclusive_until_released_or_expired(bare_bus: Callable[[], Any]) -> None:
    bus = await bare_bus()
    kv = await bus.bucket(KV_LEASES)
    now = [1_000_000.0]
    first, second = Leases(kv, "first", clock=lambda: now[0]), Leases(kv, "second", clock=lambda: now[0])
    name = f"test.{new_id('ten')}"
    held = await first.try_acquire(name, ttl_s=30)
    assert held is not None and await second.try_acquire(name, ttl_s=30) is None
    now[0] += 20
    assert await first.renew(held, ttl_s=30)  # now good until +50
    now[0] += 25
    assert await second.try_acquire(name, ttl_s=30) is None, "renewed: not expired yet"
    now[0] += 10
    taken = await second.try_acquire(name, ttl_s=30)
    assert taken is not None, "expired: taken over"
    assert not await first.renew(held, ttl_s=30) and held.lost, "the old holder learns it lost it"
    await first.release(held)  # a no-op: it is not first's any more
    assert await first.try_acquire(name, ttl_s=30) is None
    await second.release(taken)
    assert await first.try_acquire(name, ttl_s=30) is not None, "released: free at once"
    with pytest.raises(TimeoutError):
        await second.acquire(name, ttl_s=30, wait_s=0.2)
