"""Throttling with Redis counters: fixed windows, counted before the work is done.

Each attempt increments its counters first (atomically, in one MULTI), so concurrent
attempts cannot slip past a limit together. A window starts with the first attempt
and is never extended, so ``retry_after_ms`` is exact. Keys hold no personal data:
an account is named by a hash of its normalised email.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from redis.asyncio import Redis

from apex_auth import metrics
from apex_contracts import RateLimited

_PREFIX = "apex:auth:throttle"
# A plain DECR after the window expired would leave a negative counter without a TTL.
_DECR_IF_PRESENT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('DECR', KEYS[1]) end
return 0
"""


@dataclass(frozen=True, slots=True)
class Limit:
    name: str
    limit: int
    window_s: int


@dataclass(frozen=True, slots=True)
class Counter:
    key: str
    limit: Limit


def account_key(email: str) -> str:
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]


class Throttle:
    """``hit`` counts an attempt against several limits and raises RateLimited (with
    ``retry_after_ms``) when any of them is over; ``forgive`` takes one attempt back."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    def counter(self, limit: Limit, subject: str) -> Counter:
        return Counter(f"{_PREFIX}:{limit.name}:{subject}", limit)

    async def hit(self, *counters: Counter) -> None:
        pipe = self._redis.pipeline(transaction=True)
        for counter in counters:
            pipe.incr(counter.key)
            pipe.expire(counter.key, counter.limit.window_s, nx=True)
            pipe.pttl(counter.key)
        replies = await pipe.execute()
        waits = []
        for index, counter in enumerate(counters):
            count, _, pttl = replies[3 * index : 3 * index + 3]
            if int(count) > counter.limit.limit:
                metrics.THROTTLED.labels(counter.limit.name).inc()
                waits.append(max(int(pttl), 1))
        if waits:
            retry_after_ms = max(waits)
            raise RateLimited(
                f"Too many attempts; try again in {math.ceil(retry_after_ms / 1000)} s.",
                retry_after_ms=retry_after_ms,
            )

    async def forgive(self, counter: Counter) -> None:
        await self._redis.eval(_DECR_IF_PRESENT, 1, counter.key)

    async def reset(self, counter: Counter) -> None:
        await self._redis.delete(counter.key)
