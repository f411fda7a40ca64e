"""The rebuild of one store, while its live view keeps serving and being fed:

1. ``prepare``: an empty fresh set, seeded with every recorded erasure;
2. copy the log (archive beyond the stream's retention, then the stream) into it, in
   passes, until it is within ``close_gap`` events of the head;
3. ``finish``: the store's retention, applied to the fresh set;
4. ``swap``: the last events, then the fresh set becomes the live one;
5. the events that arrived during the swap are applied to the live view again (every
   projection is idempotent, so this only repairs what a replica may have written to
   the retired set), and the retired set is dropped.

A failure before the swap drops the fresh set and leaves the live view as it was.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from sqlalchemy import text

from apex_contracts import Conflict
from apex_persistence.postgres.db import Database
from apex_persistence.projection.ports import Projection
from apex_persistence.rebuild.fresh import FreshViews
from apex_persistence.rebuild.source import LogSource

log = logging.getLogger(__name__)
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class RebuildReport:
    store: str
    events: int
    seconds: float
    reached: int

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


async def rebuild(
    fresh: FreshViews, source: LogSource, *, progress: Progress | None = None, close_gap: int = 2000
) -> RebuildReport:
    started = time.monotonic()
    copier = _Copier(source, fresh.projection, fresh.store, progress)
    await fresh.prepare()
    try:
        while True:
            await copier.copy_to(await source.head())
            if await source.head() - copier.position <= close_gap:
                break
        await fresh.finish()

        async def catch_up() -> int:
            await copier.copy_to(await source.head())
            return copier.position

        reached = await fresh.swap(catch_up)
    except BaseException:
        with contextlib.suppress(*fresh.projection.failures):
            await fresh.discard()
        raise
    seconds = time.monotonic() - started
    await _Copier(source, fresh.live, fresh.store, None, start=reached).copy_to(await source.head())
    with contextlib.suppress(*fresh.projection.failures):
        await fresh.discard()
    report = RebuildReport(fresh.store, copier.events, seconds, reached)
    log.info(
        "%s rebuilt: %d events in %.1f s (%.0f events/s)", report.store, report.events, seconds, report.rate
    )
    return report


class _Copier:
    """Applies the log to a projection from ``start``; ``position``: everything up to it is in."""

    def __init__(
        self,
        source: LogSource,
        projection: Projection,
        store: str,
        progress: Progress | None,
        *,
        start: int = 0,
    ) -> None:
        self.source = source
        self.projection = projection
        self.store = store
        self.progress = progress
        self.position = start
        self.events = 0

    async def copy_to(self, head: int) -> None:
        async for batch in self.source.batches(self.position, head):
            await self.projection.apply(batch)
            self.events += len(batch)
            self.position = max(self.position, batch[-1].seq)
            if self.progress is not None:
                self.progress(self.store, self.position, head)
        self.position = max(self.position, head)


@contextlib.asynccontextmanager
async def exclusive(db: Database, store: str) -> AsyncIterator[None]:
    """One rebuild of a store at a time, across every replica (a Postgres session lock)."""
    name = f"apex_persistence.rebuild.{store}"
    async with db.engine.connect() as conn:
        if not await conn.scalar(text("SELECT pg_try_advisory_lock(hashtext(:name))"), {"name": name}):
            raise Conflict(f"a rebuild of {store} is already running")
        try:
            yield
        finally:
            await conn.execute(text("SELECT pg_advisory_unlock(hashtext(:name))"), {"name": name})
            await conn.commit()
