"""Delivery cursors: the highest seq a user acknowledged per thread (cumulative).

Redis holds them (``apex:<tenant>:cursor:<user>:<thread>``, moved by a max script) and
persistence keeps them in Postgres, flushed by ``CursorFlusher``. A key Redis does not
have (never acked, or lost: a restart without persistence, an eviction) is restored
from persistence and this gateway's unflushed cursors before it is read or advanced, so
a cursor never reads lower than what was stored. If persistence cannot answer a read,
the read fails (``store_unavailable``); it never silently reads 0.
"""

from __future__ import annotations

import logging

import redis.asyncio as aioredis
import redis.exceptions
from prometheus_client import Counter

from apex_contracts import ErrorCode, Unavailable
from apex_gateway.cursor_flusher import STORE_FAILURES, CursorArchive, CursorFlusher, CursorId
from apex_gateway.tokens import Principal
from apex_runtime import CircuitBreaker, CircuitOpen

log = logging.getLogger(__name__)

_ADVANCE = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > current then
  redis.call('SET', KEYS[1], ARGV[1])
  return tonumber(ARGV[1])
end
return current
"""
# The same, but only for a key Redis has: -1 when it has none (to be restored first).
_ADVANCE_KNOWN = """
local current = redis.call('GET', KEYS[1])
if not current then
  return -1
end
if tonumber(ARGV[1]) > tonumber(current) then
  redis.call('SET', KEYS[1], ARGV[1])
  return tonumber(ARGV[1])
end
return tonumber(current)
"""
_REDIS_FAILURES = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


def cursor_key(who: Principal, thread_id: str) -> str:
    return f"apex:{who.tenant_id}:cursor:{who.user_id}:{thread_id}"


class DeliveryCursors:
    def __init__(
        self,
        redis: aioredis.Redis,
        breaker: CircuitBreaker,
        archive: CursorArchive,
        flusher: CursorFlusher,
        restores: Counter,
    ) -> None:
        self._redis = redis
        self._breaker = breaker
        self._archive = archive
        self._flusher = flusher
        self._restores = restores
        self._advance = redis.register_script(_ADVANCE)
        self._advance_known = redis.register_script(_ADVANCE_KNOWN)

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
        if value is not None:
            return int(value)
        seq = await self._stored(who, thread_id)
        if seq == 0:
            return 0
        try:
            return await self._seed(who, thread_id, seq)
        except (*_REDIS_FAILURES, CircuitOpen) as exc:
            log.warning("restored cursor of %s not written back to Redis: %r", thread_id, exc)
            return seq

    async def advance(self, who: Principal, thread_id: str, seq: int) -> int:
        """Moves the cursor forward (never back); returns the stored value."""
        key = cursor_key(who, thread_id)
        cursor: CursorId = (who.tenant_id, who.user_id, thread_id)
        try:
            stored = int(
                await self._breaker.call(lambda: self._advance_known(keys=[key], args=[seq]), _REDIS_FAILURES)
            )
            if stored < 0:
                stored = await self._restore_and_advance(who, thread_id, seq)
        except _REDIS_FAILURES as exc:
            raise Unavailable(
                "Your acknowledgement could not be stored; it will be asked again.",
                code=ErrorCode.STORE_UNAVAILABLE,
            ) from exc
        self._flusher.mark(cursor, stored)
        return stored

    async def start_fresh(self, who: Principal, thread_id: str) -> None:
        """A thread this user's send just created has no cursor anywhere: its key starts
        at 0 (unless it exists), so its first ack needs no read of the stored cursor."""
        try:
            await self._breaker.call(
                lambda: self._redis.set(cursor_key(who, thread_id), 0, nx=True), _REDIS_FAILURES
            )
        except (*_REDIS_FAILURES, CircuitOpen) as exc:
            log.warning("cursor of new thread %s not started: %r", thread_id, exc)

    async def forget(self, who: Principal, thread_id: str) -> None:
        """Drops the thread's cursor from Redis (its erasure; persistence drops its row and
        refuses later flushes of it). Redis being down leaves a bare number behind, never
        content: it is logged, not raised, so the erasure itself goes on."""
        try:
            await self._breaker.call(lambda: self._redis.delete(cursor_key(who, thread_id)), _REDIS_FAILURES)
        except _REDIS_FAILURES as exc:
            log.warning("the cursor of erased thread %s remains until Redis is back: %r", thread_id, exc)

    async def _restore_and_advance(self, who: Principal, thread_id: str, seq: int) -> int:
        """Redis has no key: it gets the stored cursor (or ``seq`` if further). Without an
        answer from persistence Redis stays without the key, so the next read asks again,
        and the ack is only held for the flush (which moves the stored cursor forward only)."""
        try:
            stored = await self._stored(who, thread_id)
        except Unavailable:
            return seq
        return await self._seed(who, thread_id, max(stored, seq))

    async def _stored(self, who: Principal, thread_id: str) -> int:
        cursor: CursorId = (who.tenant_id, who.user_id, thread_id)
        try:
            stored = await self._archive.load(cursor)
        except STORE_FAILURES as exc:
            self._restores.labels("unavailable").inc()
            log.warning("cursor of %s not restored: %r", thread_id, exc)
            raise Unavailable(
                "Your read position cannot be loaded right now; subscribe with a seq.",
                code=ErrorCode.STORE_UNAVAILABLE,
            ) from exc
        self._restores.labels("found" if stored else "none").inc()
        return max(stored, self._flusher.pending(cursor))

    async def _seed(self, who: Principal, thread_id: str, seq: int) -> int:
        key = cursor_key(who, thread_id)
        return int(await self._breaker.call(lambda: self._advance(keys=[key], args=[seq]), _REDIS_FAILURES))
