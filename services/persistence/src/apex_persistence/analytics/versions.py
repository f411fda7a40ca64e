"""Versions of what persistence keeps answers for, and the answers kept per version.

A version is the revision of a key in the NATS KV bucket ``apex_versions``:
``usage.<tenant>`` for a tenant's ``llm_usage`` rows, ``erasures`` for the analytics
tombstones (``erased_threads``, ``erased_users``). Every change ends by bumping its key;
a reader reads the version from the bucket stream's leader *before* it reads the store.
So an answer read at version v holds every change whose bump gave a version up to v,
and a later change gives a version no kept answer has. Any replica bumps, every replica
reads: a change made by one is seen by all. When the version cannot be read, the reader
reads the store and keeps nothing.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final, Protocol

from apex_contracts import Unavailable
from apex_contracts.queries import UsageRows
from apex_contracts.streams import KV_VERSIONS
from apex_runtime import Bus

ERASURES: Final = "erasures"


def usage_key(tenant_id: str) -> str:
    return f"usage.{tenant_id}"


class Versions(Protocol):
    async def current(self, key: str) -> int:
        """The key's version as the leader has it (0: never bumped); raises Unavailable
        when the bus cannot say."""
        ...

    async def bump(self, key: str) -> None:
        """Gives the key a new version; raises Unavailable when it could not."""
        ...


class BusVersions:
    """``Versions`` in the KV bucket ``apex_versions``."""

    def __init__(self, bus: Bus) -> None:
        self._bus = bus

    async def current(self, key: str) -> int:
        return await self._bus.last_seq(f"$KV.{KV_VERSIONS}.{key}", stream=f"KV_{KV_VERSIONS}", leader=True)

    async def bump(self, key: str) -> None:
        bucket = await self._bus.bucket(KV_VERSIONS)
        await bucket.put(key, b"")


async def version_or_none(versions: Versions | None, key: str) -> int | None:
    """The key's version, or None (no versions, or the bus could not say)."""
    if versions is None:
        return None
    try:
        return await versions.current(key)
    except Unavailable:
        return None


class AnswerCache:
    """Aggregate answers by (query, version), the least recently used dropped first.
    Only small answers are kept (``max_rows``), for at most ``max_age_s``."""

    def __init__(
        self,
        max_entries: int = 512,
        max_rows: int = 1000,
        max_age_s: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_entries = max_entries
        self.max_rows = max_rows
        self.max_age_s = max_age_s
        self.clock = clock
        self._kept: OrderedDict[tuple[str, int], tuple[float, UsageRows]] = OrderedDict()

    def get(self, query: str, version: int) -> UsageRows | None:
        kept = self._kept.get((query, version))
        if kept is None or self.clock() - kept[0] > self.max_age_s:
            return None
        self._kept.move_to_end((query, version))
        return kept[1]

    def put(self, query: str, version: int, answer: UsageRows) -> None:
        if len(answer.rows) > self.max_rows:
            return
        self._kept[(query, version)] = (self.clock(), answer)
        self._kept.move_to_end((query, version))
        while len(self._kept) > self.max_entries:
            self._kept.popitem(last=False)
