"""Redis: the hot keys rebuilt under the prefix ``apex:rebuild:``, then renamed onto the
live names (``RENAME`` replaces a key atomically, TTL included) and the live keys the
rebuild did not produce deleted. A reader sees each key either as it was or as rebuilt,
never missing. Only the hot view's own key shapes are touched (the gateway's cursors
share the ``apex:<tenant>:`` prefix and are left alone). Redis has no multi-key swap, so
the view is switched key by key; the live projection applies the events that arrived
meanwhile again afterwards (idempotent)."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Final

import redis.asyncio as aioredis

from apex_persistence.hot import CHECKPOINT_KEY, KeySpace, RedisProjection
from apex_persistence.projection.erasure import Erasure
from apex_persistence.rebuild.fresh import CatchUp

log = logging.getLogger(__name__)
FRESH_PREFIX: Final = "apex:rebuild:"
_ULID = r"[0-7][0-9A-HJKMNP-TV-Z]{25}"
HOT_KEY: Final = re.compile(
    rf"^apex:ten_{_ULID}:(run:run_{_ULID}|thread:thr_{_ULID}:(recent|runs|deleted|erased|erased_runs)"
    rf"|user:usr_{_ULID}:(threads|erased|erased_runs))$"
)
_HOT_PATTERNS: Final = ("apex:ten_*:run:*", "apex:ten_*:thread:*", "apex:ten_*:user:*")
_RENAME = """
for i, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then redis.call('RENAME', key, string.sub(key, tonumber(ARGV[1]) + 1)) end
end
return #KEYS
"""
_CHUNK: Final = 500


class FreshRedis:
    store = "redis"

    def __init__(self, client: aioredis.Redis, erasures: Sequence[Erasure], *, keep: int, ttl_s: int) -> None:
        self.client = client
        self.erasures = erasures
        # Only the last ttl_s of the log: older keys would have expired from the live view.
        self.projection = RedisProjection(
            client, keep=keep, ttl_s=ttl_s, name="redis-rebuild", keys=KeySpace(FRESH_PREFIX), window_s=ttl_s
        )
        self.live = RedisProjection(client, keep=keep, ttl_s=ttl_s)
        self._rename = client.register_script(_RENAME)

    async def prepare(self) -> None:
        await self.discard()
        await self.projection.load_scripts()
        async with self.client.pipeline(transaction=False) as pipe:
            for erasure in self.erasures:
                if erasure.kind == "user":
                    self.projection.queue_user_erasure(pipe, erasure)
                else:
                    await self.projection.queue_thread_tombstone(pipe, erasure)
            await pipe.execute()

    async def finish(self) -> None:
        """Redis's retention is the TTL each key already carries."""

    async def swap(self, catch_up: CatchUp) -> int:
        reached = await catch_up()
        fresh = [key async for key in self.client.scan_iter(match=FRESH_PREFIX + "*", count=1000)]
        fresh = [key for key in fresh if key.decode() != FRESH_PREFIX + CHECKPOINT_KEY]
        for start in range(0, len(fresh), _CHUNK):
            await self._rename(keys=fresh[start : start + _CHUNK], args=[len(FRESH_PREFIX)])
        rebuilt = {key[len(FRESH_PREFIX) :] for key in fresh}
        stale = [
            key
            for pattern in _HOT_PATTERNS
            async for key in self.client.scan_iter(match=pattern, count=1000)
            if HOT_KEY.match(key.decode()) and key not in rebuilt
        ]
        for start in range(0, len(stale), _CHUNK):
            await self.client.unlink(*stale[start : start + _CHUNK])
        await self.live.checkpoint(reached)
        log.info(
            "redis: %d rebuilt keys swapped in, %d stale keys removed, at seq %d",
            len(fresh),
            len(stale),
            reached,
        )
        return reached

    async def discard(self) -> None:
        batch: list[bytes] = []
        async for key in self.client.scan_iter(match=FRESH_PREFIX + "*", count=1000):
            batch.append(key)
            if len(batch) >= _CHUNK:
                await self.client.unlink(*batch)
                batch = []
        if batch:
            await self.client.unlink(*batch)
