"""A lease renewal the bus did not confirm may land later: the holder's next renewal
finds its own token there and goes on; another holder's token is a takeover."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import pytest

from apex_contracts.streams import KV_LEASES
from apex_runtime.leases import Leases
from apex_runtime.memory import MemoryBus
from apex_runtime.port import KvBucket


@pytest.fixture
async def kv() -> AsyncIterator[KvBucket]:
    bus = MemoryBus()
    yield await bus.bucket(KV_LEASES)
    await bus.close()


async def test_a_renewal_that_landed_unconfirmed_is_not_a_takeover(kv: KvBucket) -> None:
    leases = Leases(kv, "ingest-1")
    lease = await leases.try_acquire("commit", 30.0)
    assert lease is not None
    entry = await kv.get("commit")
    assert entry is not None
    await kv.update("commit", entry.value, last=lease.revision)  # our renewal, landed late
    assert await leases.renew(lease, 30.0)
    assert not lease.lost


async def test_another_holders_lease_is_a_takeover(kv: KvBucket) -> None:
    leases = Leases(kv, "ingest-1")
    lease = await leases.try_acquire("commit", 30.0)
    assert lease is not None
    other = orjson.dumps({"holder": "ingest-2", "token": "t2", "expires_at": 1e12})
    await kv.update("commit", other, last=lease.revision)
    assert not await leases.renew(lease, 30.0)
    assert lease.lost
