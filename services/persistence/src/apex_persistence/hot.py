"""The Redis (hot) projection: each run's status and the last events of each thread.

Exactly-once argument: every write is guarded by the event's stream sequence inside a
Lua script (atomic on the server). A run's hash is replaced only by an event that is
further in the run's life (accepted < running < terminal) or, at the same stage, has a
higher sequence than the one it holds, so a redelivered, older or re-stored event never
regresses it; a thread's recent events are a sorted set scored by sequence whose member is the
event as published, added with ``LT`` so that the same event stored twice keeps its
first sequence whatever the order, and the trim keeps the highest ``keep``. A deleted thread leaves a tombstone that turns its late events into no-ops.
Keys (one tenant's prefix each): ``apex:<tenant>:run:<run>`` (hash: status, thread_id,
seq, updated_at, rank), ``apex:<tenant>:thread:<thread>:recent`` (sorted set),
``…:runs`` (the thread's run ids, for erasure), ``…:deleted`` (tombstone).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, cast

import orjson
import redis.asyncio as aioredis
import redis.exceptions

from apex_contracts import ThreadDeleted, validate_id
from apex_persistence.projection import facts
from apex_persistence.projection.delivery import Delivery, Projected, decode_events, last_seq

REDIS_FAILURES: Final[tuple[type[BaseException], ...]] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)
CHECKPOINT_KEY: Final = "apex:projection:redis:last_seq"

_APPLY = """
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
local seq = tonumber(ARGV[1])
local ttl = tonumber(ARGV[8])
if ARGV[2] ~= '' then
  local rank = tonumber(ARGV[9])
  local stored_rank = tonumber(redis.call('HGET', KEYS[1], 'rank') or '-1')
  local stored_seq = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
  if rank > stored_rank or (rank == stored_rank and seq > stored_seq) then
    redis.call('HSET', KEYS[1], 'status', ARGV[2], 'thread_id', ARGV[3], 'seq', ARGV[1],
               'updated_at', ARGV[4], 'rank', ARGV[9])
  end
  redis.call('EXPIRE', KEYS[1], ttl)
  redis.call('SADD', KEYS[4], ARGV[5])
  redis.call('EXPIRE', KEYS[4], ttl)
end
local keep = tonumber(ARGV[7])
if keep > 0 then
  redis.call('ZADD', KEYS[2], 'LT', seq, ARGV[6])
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -(keep + 1))
  redis.call('EXPIRE', KEYS[2], ttl)
end
return 1
"""
_DELETE = """
redis.call('SET', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[1])
if ARGV[2] == '1' then
  for _, run in ipairs(redis.call('SMEMBERS', KEYS[3])) do
    redis.call('DEL', ARGV[3] .. run)
  end
  redis.call('DEL', KEYS[3])
end
return 1
"""
_CHECKPOINT = """
local stored = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > stored then redis.call('SET', KEYS[1], ARGV[1]) end
return 1
"""


def run_key(tenant_id: str, run_id: str) -> str:
    return f"apex:{validate_id(tenant_id, 'ten')}:run:{validate_id(run_id, 'run')}"


def thread_key(tenant_id: str, thread_id: str, part: str) -> str:
    return f"apex:{validate_id(tenant_id, 'ten')}:thread:{validate_id(thread_id, 'thr')}:{part}"


class RedisProjection:
    failures = REDIS_FAILURES

    def __init__(self, client: aioredis.Redis, *, keep: int = 100, ttl_s: int = 7 * 86_400,
                 name: str = "redis") -> None:
        self.client = client
        self.keep = keep
        self.ttl_s = ttl_s
        self.name = name
        self._apply = client.register_script(_APPLY)
        self._delete = client.register_script(_DELETE)
        self._checkpoint = client.register_script(_CHECKPOINT)

    async def position(self) -> int:
        return int(await self.client.get(CHECKPOINT_KEY) or 0)

    async def apply(self, batch: Sequence[Delivery]) -> None:
        if not batch:
            return
        async with self.client.pipeline(transaction=False) as pipe:
            for projected in decode_events(batch):
                await self._queue(pipe, projected)
            await self._checkpoint(keys=[CHECKPOINT_KEY], args=[last_seq(batch)], client=pipe)
            await pipe.execute()

    async def _queue(self, pipe: Any, projected: Projected) -> None:
        event = projected.event
        tenant, thread = event.tenant_id, event.thread_id
        if isinstance(event, ThreadDeleted):
            await self._delete(
                keys=[thread_key(tenant, thread, "recent"), thread_key(tenant, thread, "deleted"),
                      thread_key(tenant, thread, "runs")],
                args=[projected.seq, "1" if event.data.erase else "0", f"apex:{tenant}:run:"],
                client=pipe,
            )
            return
        status = facts.run_status(event) if event.run_id else None
        await self._apply(
            keys=[run_key(tenant, event.run_id) if event.run_id else thread_key(tenant, thread, "none"),
                  thread_key(tenant, thread, "recent"), thread_key(tenant, thread, "deleted"),
                  thread_key(tenant, thread, "runs")],
            args=[projected.seq, status or "", thread, event.occurred_at.isoformat(), event.run_id or "",
                  _raw(projected), self.keep, self.ttl_s, facts.status_rank(status or "")],
            client=pipe,
        )


def _raw(projected: Projected) -> bytes:
    return orjson.dumps(projected.payload)


class HotViews:
    """Reads of the hot projection (for the gateway's fast paths and for tests)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client

    async def run_status(self, tenant_id: str, run_id: str) -> dict[str, str] | None:
        """The run's hash (status, thread_id, seq, updated_at); None when unknown."""
        raw = cast(dict[bytes, bytes], await self.client.hgetall(run_key(tenant_id, run_id)))
        return {k.decode(): v.decode() for k, v in raw.items()} or None

    async def recent_events(self, tenant_id: str, thread_id: str) -> list[tuple[int, bytes]]:
        """The thread's most recent events as (seq, event JSON), in seq order."""
        members = cast(list[tuple[bytes, float]], await self.client.zrange(
            thread_key(tenant_id, thread_id, "recent"), 0, -1, withscores=True
        ))
        return [(int(score), member) for member, score in members]
