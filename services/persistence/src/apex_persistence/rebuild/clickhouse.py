"""ClickHouse: the event tables rebuilt in the database ``<db>_rebuild`` (same versioned
DDL), then exchanged with the live ones (``EXCHANGE TABLES``: atomic, per table) and the
retired tables dropped with that database. ``llm_usage`` is not a view of the log (usage
uploads are commands, consumed once) and is never rebuilt or swapped."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Final

from apex_persistence.analytics.ddl import migrate_analytics
from apex_persistence.analytics.port import AnalyticsStore
from apex_persistence.analytics.projector import ClickHouseProjection
from apex_persistence.analytics.versions import ERASURES, Versions
from apex_persistence.projection.erasure import Erasure
from apex_persistence.rebuild.fresh import CatchUp
from apex_persistence.retention import sweep_clickhouse

log = logging.getLogger(__name__)
SWAPPED: Final = ("events", "erased_threads", "erased_users", "projection_checkpoints")


class FreshClickHouse:
    store = "clickhouse"

    def __init__(
        self,
        live: AnalyticsStore,
        erasures: Sequence[Erasure],
        *,
        retention_cutoff: datetime | None = None,
        versions: Versions | None = None,
    ) -> None:
        self.versions = versions
        self.live_store = live
        self.fresh_store = live.sibling(f"{live.database}_rebuild")
        self.erasures = erasures
        self.retention_cutoff = retention_cutoff
        self.projection = ClickHouseProjection(self.fresh_store)
        self.live = ClickHouseProjection(live)

    async def prepare(self) -> None:
        await self.fresh_store.command("DROP DATABASE IF EXISTS $db")
        await migrate_analytics(self.fresh_store)
        await self.projection.record(self.erasures)

    async def finish(self) -> None:
        if self.retention_cutoff is not None:
            await sweep_clickhouse(self.fresh_store, self.retention_cutoff, None)

    async def swap(self, catch_up: CatchUp) -> int:
        reached = await catch_up()
        for table in SWAPPED:
            await self.live_store.command(
                f"EXCHANGE TABLES $db.{table} AND {self.fresh_store.database}.{table}"
            )
        log.info("clickhouse: rebuilt tables swapped in at seq %d", reached)
        if self.versions is not None:  # the live projectors' tombstones are the swapped-out tables'
            await self.versions.bump(ERASURES)
        return reached

    async def discard(self) -> None:
        try:
            await self.fresh_store.command("DROP DATABASE IF EXISTS $db")
        finally:
            await self.fresh_store.close()
