"""The per-user limits shared across gateways, over a real Valkey: two ``UserLimits`` (two
gateways) share one connection cap and one frame bucket; a killed gateway's slots free
themselves when their leases end; when Valkey goes away the limits fall back to each
process's own counts, visibly (gauge, counter, warning), never to no limit."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry, Counter, Gauge

from apex_cli.embedded import EmbeddedServer
from apex_contracts import new_id
from apex_gateway.limits import UserLimits
from apex_runtime import CircuitBreaker


class Gateway:
    """One gateway's limits and its own open sockets."""

    def __init__(self, redis_url: str, *, lease_s: float = 30.0, rate: float = 1.0, burst: int = 5) -> None:
        self.redis = aioredis.from_url(redis_url, socket_timeout=1.0, socket_connect_timeout=1.0)
        self.local: dict[str, int] = {}
        registry = CollectorRegistry()
        self.degraded = Counter("degraded", "x", ["limit"], registry=registry)
        self.up = Gauge("up", "x", registry=registry)
        self.limits = UserLimits(
            self.redis,
            CircuitBreaker("redis", threshold=100),
            max_connections=3,
            rate_per_s=rate,
            burst=burst,
            lease_s=lease_s,
            local_connections=lambda user: self.local.get(user, 0),
            degraded=self.degraded,
            shared_up=self.up,
        )

    async def open(self, user: str) -> str | None:
        member = new_id("con")
        if not await self.limits.admit(user, member):
            return None
        self.local[user] = self.local.get(user, 0) + 1
        return member

    def degraded_count(self, limit: str) -> float:
        return self.degraded.labels(limit)._value.get()


@pytest.fixture
def valkey(server_factory: Callable[[str], EmbeddedServer]) -> Iterator[EmbeddedServer]:
    server = server_factory("redis")
    yield server
    server.stop()


async def test_two_gateways_share_the_cap_and_a_dead_gateways_slots_expire(valkey: EmbeddedServer) -> None:
    one, two = Gateway(valkey.url), Gateway(valkey.url, lease_s=1.0)
    user = new_id("usr")
    first = await one.open(user)
    assert first is not None
    assert await two.open(user) is not None
    assert await two.open(user) is not None
    assert await one.open(user) is None and await two.open(user) is None, "3 in all, not 3 per gateway"
    await one.limits.release(user, first)
    assert await one.open(user) is not None
    # gateway two dies without releasing: its slots end with their 1 s leases
    await asyncio.sleep(1.5)
    await one.limits.renew([])
    assert await one.open(user) is not None and await one.open(user) is not None
    assert await one.open(user) is None
    await one.redis.aclose()
    await two.redis.aclose()


async def test_two_gateways_draw_from_one_frame_bucket(valkey: EmbeddedServer) -> None:
    one, two = Gateway(valkey.url, rate=0.5, burst=4), Gateway(valkey.url, rate=0.5, burst=4)
    user = new_id("usr")
    waits = [await gw.limits.take_frame(user) for gw in (one, two, one, two, one, two)]
    assert waits[:4] == [0, 0, 0, 0], "the burst is the user's, not each gateway's"
    assert waits[4] > 0 and waits[5] > 0
    assert await one.limits.take_frame(new_id("usr")) == 0, "another user has their own bucket"
    await one.redis.aclose()
    await two.redis.aclose()


async def test_a_redis_outage_degrades_to_per_process_limits_visibly(
    valkey: EmbeddedServer, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = Gateway(valkey.url, rate=0.5, burst=3)
    user = new_id("usr")
    assert gateway.up._value.get() == 1
    valkey.stop()
    with caplog.at_level(logging.WARNING, logger="apex_gateway.limits"):
        opened = [await gateway.open(user) for _ in range(4)]
        waits = [await gateway.limits.take_frame(user) for _ in range(4)]
    assert [m is not None for m in opened] == [True, True, True, False], "still capped, by this process"
    assert waits[:3] == [0, 0, 0] and waits[3] > 0, "still rate-limited, by this process"
    assert gateway.up._value.get() == 0
    assert gateway.degraded_count("connections") == 4 and gateway.degraded_count("frame_rate") == 4
    assert sum("fall back to this gateway's own counts" in r.message for r in caplog.records) == 1

    valkey.start()
    deadline = asyncio.get_running_loop().time() + 30
    while await gateway.limits.take_frame(new_id("usr")) != 0 or gateway.limits.degraded:
        assert asyncio.get_running_loop().time() < deadline, "never shared again"
        await asyncio.sleep(0.2)
    assert gateway.up._value.get() == 1
    await gateway.redis.aclose()
