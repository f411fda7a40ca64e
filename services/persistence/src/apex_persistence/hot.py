"""The Redis (hot) projection: each run's status and the last events of each thread.

Exactly-once argument: every write is guarded by the event's stream sequence inside a
Lua script (atomic on the server). A run's hash is replaced only by an event that is
further in the run's life (accepted < running < terminal) or, at the same stage, has a
higher sequence than the one it holds, so a redelivered, older or re-stored event never
regresses it; a thread's recent events are a sorted set scored by sequence whose member
is the event as published (keys sorted), added with ``LT`` so that the same event stored twice keeps
its first sequence whatever the order, and the trim keeps the highest ``keep``. A deleted
thread or an erased user leaves a tombstone that turns the events it covers into no-ops.

A batch is one pipeline, one round trip: its scripts go by SHA alone (``EVALSHA``).
redis-py's ``Script`` in a pipeline first asks ``SCRIPT EXISTS`` on every execute, a
second round trip per batch; here a server that lacks them (restarted, flushed) answers
``NOSCRIPT``, and the batch is sent again once they are loaded, which the sequence guards
make harmless.

Keys (one tenant's prefix each): ``apex:<tenant>:run:<run>`` (hash: status, thread_id,
seq, updated_at, rank), ``apex:<tenant>:thread:<thread>:recent`` (sorted set),
``…:runs`` (the thread's run ids, for erasure), ``…:deleted`` (a hidden thread's
tombstone: its events are no-ops for good), ``…:erased`` and ``…:erased_runs`` (an erased
thread's tombstone seq and the runs it names: events before it, and later events of
those runs, are no-ops), ``apex:<tenant>:user:<user>:threads`` (the user's thread ids,
for erasure), ``…:erased`` and ``…:erased_runs`` (the user's tombstone, alike). A rebuild
writes the same keys under ``KeySpace.prefix``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, cast

import orjson
import redis.asyncio as aioredis
import redis.exceptions
from redis.commands.core import AsyncScript

from apex_contracts import ThreadDeleted, validate_id
from apex_persistence.projection import facts
from apex_persistence.projection.delivery import Delivery, Projected, decode, last_seq
from apex_persistence.projection.erasure import Erasure

REDIS_FAILURES: Final[tuple[type[BaseException], ...]] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)
CHECKPOINT_KEY: Final = "apex:projection:redis:last_seq"

_APPLY = """
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
local seq = tonumber(ARGV[1])
local run = ARGV[5]
for _, pair in ipairs({{7, 8}, {5, 9}}) do
  local erased = redis.call('GET', KEYS[pair[1]])
  if erased and (seq <= tonumber(erased) or (run ~= '' and redis.call('SISMEMBER', KEYS[pair[2]], run) == 1)) then
    return 0
  end
end
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
redis.call('SADD', KEYS[6], ARGV[3])
redis.call('EXPIRE', KEYS[6], ttl)
local keep = tonumber(ARGV[7])
if keep > 0 then
  redis.call('ZADD', KEYS[2], 'LT', seq, ARGV[6])
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -(keep + 1))
  redis.call('EXPIRE', KEYS[2], ttl)
end
return 1
"""
# A thread's tombstone: hidden (a soft delete) for good; erased: what came before it
# goes, and the runs it names (the tombstone's own later facts) are remembered.
_DELETE = """
local seq = tonumber(ARGV[1])
local user_erased = redis.call('GET', KEYS[4])
if user_erased and seq <= tonumber(user_erased) then return 0 end
local thread_erased = redis.call('GET', KEYS[6])
if thread_erased and seq <= tonumber(thread_erased) and ARGV[2] ~= '1' then return 0 end
if ARGV[2] == '1' then
  if seq > tonumber(redis.call('GET', KEYS[6]) or '0') then redis.call('SET', KEYS[6], ARGV[1]) end
  for i = 5, #ARGV do redis.call('SADD', KEYS[7], ARGV[i]) end
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
  for _, run in ipairs(redis.call('SMEMBERS', KEYS[3])) do
    redis.call('DEL', ARGV[3] .. run)
  end
  redis.call('DEL', KEYS[3])
  redis.call('SREM', KEYS[5], ARGV[4])
else
  redis.call('SET', KEYS[2], ARGV[1])
  redis.call('DEL', KEYS[1])
end
return 1
"""
_ERASE_USER = """
if tonumber(ARGV[1]) > tonumber(redis.call('GET', KEYS[1]) or '0') then redis.call('SET', KEYS[1], ARGV[1]) end
for i = 4, #ARGV do redis.call('SADD', KEYS[3], ARGV[i]) end
for _, thread in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local base = ARGV[2] .. thread .. ':'
  for _, run in ipairs(redis.call('SMEMBERS', base .. 'runs')) do
    redis.call('DEL', ARGV[3] .. run)
  end
  redis.call('DEL', base .. 'runs', base .. 'deleted', base .. 'erased', base .. 'erased_runs')
  redis.call('ZREMRANGEBYSCORE', base .. 'recent', '-inf', ARGV[1])
end
redis.call('DEL', KEYS[2])
return 1
"""
_CHECKPOINT = """
local stored = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > stored then redis.call('SET', KEYS[1], ARGV[1]) end
return 1
"""


@dataclass(frozen=True)
class KeySpace:
    """The projection's key names; ``prefix`` is empty for the live view. The ids come
    from decoded events (validated by the contract models), so they are not checked
    again here; ``run_key`` and ``thread_key`` check ids that come from elsewhere."""

    prefix: str = ""

    def run(self, tenant_id: str, run_id: str) -> str:
        return f"{self.prefix}apex:{tenant_id}:run:{run_id}"

    def thread(self, tenant_id: str, thread_id: str, part: str) -> str:
        return f"{self.prefix}apex:{tenant_id}:thread:{thread_id}:{part}"

    def user(self, tenant_id: str, user_id: str, part: str) -> str:
        return f"{self.prefix}apex:{tenant_id}:user:{user_id}:{part}"

    @property
    def checkpoint(self) -> str:
        return self.prefix + CHECKPOINT_KEY


def run_key(tenant_id: str, run_id: str) -> str:
    return f"apex:{validate_id(tenant_id, 'ten')}:run:{validate_id(run_id, 'run')}"


def thread_key(tenant_id: str, thread_id: str, part: str) -> str:
    return f"apex:{validate_id(tenant_id, 'ten')}:thread:{validate_id(thread_id, 'thr')}:{part}"


class RedisProjection:
    failures = REDIS_FAILURES

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        keep: int = 100,
        ttl_s: int = 7 * 86_400,
        name: str = "redis",
        keys: KeySpace | None = None,
        window_s: int | None = None,
    ) -> None:
        """``window_s``: skip events older than that (a rebuild: they would have expired);
        tombstones apply whatever their age."""
        self.client = client
        self.keep = keep
        self.ttl_s = ttl_s
        self.name = name
        self.keys = keys or KeySpace()
        self.window_s = window_s
        self._apply = client.register_script(_APPLY)
        self._delete = client.register_script(_DELETE)
        self._erase_user = client.register_script(_ERASE_USER)
        self._checkpoint = client.register_script(_CHECKPOINT)

    async def position(self) -> int:
        return int(await self.client.get(self.keys.checkpoint) or 0)

    async def load_scripts(self) -> None:
        """Loads the scripts into the server: a pipeline names them by SHA alone."""
        for script in (self._apply, self._delete, self._erase_user, self._checkpoint):
            await self.client.script_load(script.script)

    async def checkpoint(self, seq: int) -> None:
        """Raises the checkpoint to ``seq`` (never lowers it), on its own."""
        await self._checkpoint(keys=[self.keys.checkpoint], args=[seq])

    async def apply(self, batch: Sequence[Delivery]) -> None:
        if not batch:
            return
        decoded = decode(batch)
        events = decoded.events
        if self.window_s is not None:
            since = datetime.now(UTC) - timedelta(seconds=self.window_s)
            events = [p for p in events if p.event.occurred_at >= since or isinstance(p.event, ThreadDeleted)]
        steps: list[Projected | Erasure] = [*events, *(e for e in decoded.erasures if e.kind == "user")]
        steps.sort(key=lambda s: s.seq)
        try:
            await self._write(steps, last_seq(batch))
        except redis.exceptions.NoScriptError:  # a restarted or flushed server
            await self.load_scripts()
            await self._write(steps, last_seq(batch))

    async def _write(self, steps: Sequence[Projected | Erasure], seq: int) -> None:
        async with self.client.pipeline(transaction=False) as pipe:
            for step in steps:
                if isinstance(step, Erasure):
                    self.queue_user_erasure(pipe, step)
                else:
                    self._queue(pipe, step)
            await self._queue_checkpoint(pipe, seq)
            await pipe.execute()

    async def _queue_checkpoint(self, pipe: Any, seq: int) -> None:
        _queue_script(pipe, self._checkpoint, [self.keys.checkpoint], [seq])

    def queue_user_erasure(self, pipe: Any, erasure: Erasure) -> None:
        """Erases what the user's tombstone covers and leaves it (its seq, its runs);
        the pipeline's server must have the scripts (``load_scripts``)."""
        tenant, user = erasure.tenant_id, erasure.user_id
        _queue_script(
            pipe,
            self._erase_user,
            [
                self.keys.user(tenant, user, "erased"),
                self.keys.user(tenant, user, "threads"),
                self.keys.user(tenant, user, "erased_runs"),
            ],
            [
                erasure.seq,
                f"{self.keys.prefix}apex:{tenant}:thread:",
                f"{self.keys.prefix}apex:{tenant}:run:",
                *sorted(erasure.runs),
            ],
        )

    async def queue_thread_tombstone(self, pipe: Any, erasure: Erasure) -> None:
        """Leaves an erased thread's tombstone (a rebuild seeds its key space with them)."""
        assert erasure.thread_id is not None
        await pipe.set(self.keys.thread(erasure.tenant_id, erasure.thread_id, "erased"), erasure.seq)
        if erasure.runs:
            await pipe.sadd(
                self.keys.thread(erasure.tenant_id, erasure.thread_id, "erased_runs"), *sorted(erasure.runs)
            )

    def _queue(self, pipe: Any, projected: Projected) -> None:
        event = projected.event
        tenant, thread, keys = event.tenant_id, event.thread_id, self.keys
        if isinstance(event, ThreadDeleted):
            _queue_script(
                pipe,
                self._delete,
                [
                    keys.thread(tenant, thread, "recent"),
                    keys.thread(tenant, thread, "deleted"),
                    keys.thread(tenant, thread, "runs"),
                    keys.user(tenant, event.user_id, "erased"),
                    keys.user(tenant, event.user_id, "threads"),
                    keys.thread(tenant, thread, "erased"),
                    keys.thread(tenant, thread, "erased_runs"),
                ],
                [
                    projected.seq,
                    "1" if event.data.erase else "0",
                    f"{keys.prefix}apex:{tenant}:run:",
                    thread,
                    *sorted(event.data.runs),
                ],
            )
            return
        status = facts.run_status(event) if event.run_id else None
        _queue_script(
            pipe,
            self._apply,
            [
                keys.run(tenant, event.run_id) if event.run_id else keys.thread(tenant, thread, "none"),
                keys.thread(tenant, thread, "recent"),
                keys.thread(tenant, thread, "deleted"),
                keys.thread(tenant, thread, "runs"),
                keys.user(tenant, event.user_id, "erased"),
                keys.user(tenant, event.user_id, "threads"),
                keys.thread(tenant, thread, "erased"),
                keys.thread(tenant, thread, "erased_runs"),
                keys.user(tenant, event.user_id, "erased_runs"),
            ],
            [
                projected.seq,
                status or "",
                thread,
                event.occurred_at.isoformat(),
                event.run_id or "",
                _raw(projected),
                self.keep,
                self.ttl_s,
                facts.status_rank(status or ""),
            ],
        )


def _queue_script(pipe: Any, script: AsyncScript, keys: Sequence[str], args: Sequence[Any]) -> None:
    """Queues the script by its SHA (no ``SCRIPT EXISTS`` round trip before the pipeline)."""
    pipe.evalsha(script.sha, len(keys), *keys, *args)


def _raw(projected: Projected) -> bytes:
    # Keys sorted: the same event read back from the archive (jsonb) is the same member.
    return orjson.dumps(projected.payload, option=orjson.OPT_SORT_KEYS)


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
        members = cast(
            list[tuple[bytes, float]],
            await self.client.zrange(thread_key(tenant_id, thread_id, "recent"), 0, -1, withscores=True),
        )
        return [(int(score), member) for member, score in members]
