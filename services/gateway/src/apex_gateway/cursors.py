"""Delivery cursors: the highest seq a user acknowledged per thread (cumulative)."""

from __future__ import annotations

import redis.asyncio as aioredis
import redis.exceptions

from apex_contracts import ErrorCode, Unavailable
from apex_gateway.tokens import Principal
from apex_runtime import CircuitBreaker

_ADVANCE = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > current then
  redis.call('SET', KEYS[1], ARGV[1])
  return tonumber(ARGV[1])
end
return current
"""
_REDIS_FAILURES = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


def cursor_key(who: Principal, thread_id: str) -> str:
    return f"apex:{who.tenant_id}:cursor:{who.user_id}:{thread_id}"


class DeliveryCursors:
    def __init__(self, redis: aioredis.Redis, breaker: CircuitBreaker) -> None:
        self._redis = redis
        self._breaker = breaker
        self._advance = redis.register_script(_ADVANCE)

    @property
    def redis_client(self) -> aioredis.Redis:
        return self._redis

    async def get(self, who: Principal, thread_id: str) -> int:
        """The acknowledged seq, 0 when nothing was acknowledged."""
        try:
            value = await self._breaker.call(
                lambda: self._redis.get(cursor_key(who, thread_id)), _REDIS_FAILURES
            )
        except _REDIS_FAILURES as exc:
            raise Unavailable(
                "Your read position cannot be loaded right now; subscribe with a seq.",
                code=ErrorCode.STORE_UNAVAILABLE,
            ) from exc
        return int(value or 0)

    async def advance(self, who: Principal, thread_id: str, seq: int) -> int:
        """Moves the cursor forward (never back); returns the stored value."""
        try:
            return int(
                await self._breaker.call(
                    lambda: self._advance(keys=[cursor_key(who, thread_id)], args=[seq]), _REDIS_FAILURES
                )
            )
        except _REDIS_FAILURES as exc:
            raise Unavailable(
                "Your acknowledgement could not be stored; it will be asked again.",
                code=ErrorCode.STORE_UNAVAILABLE,
            ) from exc
