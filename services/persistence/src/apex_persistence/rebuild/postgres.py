"""Postgres: the view tables (threads, messages, runs, events) rebuilt in schema
``apex_rebuild`` with the same columns, constraints, index names, row-level security and
grants, then moved into ``apex`` in one transaction that holds the projection's writer
lock; readers wait for that transaction (milliseconds), never see a missing table, and
their cached plans follow the new tables. The retired tables are dropped afterwards."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Final

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from apex_persistence.postgres.db import Database
from apex_persistence.postgres.projector import PostgresProjection, writer_lock
from apex_persistence.postgres.tables import READER_ROLE, SCHEMA, TENANT_SETTING, VIEW_TABLES, view_tables_in
from apex_persistence.rebuild.fresh import CatchUp
from apex_persistence.retention import sweep_postgres

log = logging.getLogger(__name__)
FRESH_SCHEMA: Final = "apex_rebuild"
RETIRED_SCHEMA: Final = "apex_retired"
FRESH_NAME: Final = "postgres-rebuild"


class FreshPostgres:
    store = "postgres"

    def __init__(self, db: Database, *, retention_cutoff: datetime | None = None) -> None:
        self.db = db
        self.retention_cutoff = retention_cutoff
        self.projection = PostgresProjection(db, name=FRESH_NAME, schema=FRESH_SCHEMA)
        self.live = PostgresProjection(db)

    async def prepare(self) -> None:
        tables = view_tables_in(FRESH_SCHEMA)
        async with self.db.writer() as conn:
            await conn.execute(text(f"DROP SCHEMA IF EXISTS {FRESH_SCHEMA} CASCADE"))
            await conn.execute(text(f"CREATE SCHEMA {FRESH_SCHEMA}"))
            await conn.execute(text(f"GRANT USAGE ON SCHEMA {FRESH_SCHEMA} TO {READER_ROLE}"))
            for table in tables.values():
                await conn.run_sync(table.create)
                await _secure(conn, f"{FRESH_SCHEMA}.{table.name}")
            await conn.execute(
                text("DELETE FROM apex.projection_checkpoints WHERE name = :name"), {"name": FRESH_NAME}
            )

    async def finish(self) -> None:
        if self.retention_cutoff is not None:
            await sweep_postgres(self.db, self.retention_cutoff, schema=FRESH_SCHEMA, lock=FRESH_NAME)

    async def swap(self, catch_up: CatchUp) -> int:
        async with self.db.writer() as conn:
            await conn.execute(text("SET LOCAL lock_timeout = '10s'"))
            # No live batch runs from here to the commit (any replica): the fresh tables
            # catch up to the head and take the live tables' place in one step.
            await conn.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": writer_lock(self.live.name)}
            )
            reached = await catch_up()
            await conn.execute(text(f"DROP SCHEMA IF EXISTS {RETIRED_SCHEMA} CASCADE"))
            await conn.execute(text(f"CREATE SCHEMA {RETIRED_SCHEMA}"))
            for table in VIEW_TABLES:
                await conn.execute(text(f"ALTER TABLE {SCHEMA}.{table.name} SET SCHEMA {RETIRED_SCHEMA}"))
                await conn.execute(text(f"ALTER TABLE {FRESH_SCHEMA}.{table.name} SET SCHEMA {SCHEMA}"))
            await conn.execute(
                text("""
                INSERT INTO apex.projection_checkpoints (name, last_seq, updated_at) VALUES (:name, :seq, :at)
                ON CONFLICT (name) DO UPDATE
                SET last_seq = GREATEST(apex.projection_checkpoints.last_seq, EXCLUDED.last_seq), updated_at = :at
            """),
                {"name": self.live.name, "seq": reached, "at": datetime.now(UTC)},
            )
            await conn.execute(
                text("DELETE FROM apex.projection_checkpoints WHERE name = :name"), {"name": FRESH_NAME}
            )
        log.info("postgres: rebuilt views swapped in at seq %d", reached)
        return reached

    async def discard(self) -> None:
        async with self.db.writer() as conn:
            for schema in (FRESH_SCHEMA, RETIRED_SCHEMA):
                await conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
            await conn.execute(
                text("DELETE FROM apex.projection_checkpoints WHERE name = :name"), {"name": FRESH_NAME}
            )


async def _secure(conn: AsyncConnection, table: str) -> None:
    """What the migrations give every view table: row-level security and the reader's grant."""
    await conn.execute(text(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY"))
    await conn.execute(
        text(
            f"CREATE POLICY tenant_isolation ON {table} USING (tenant_id = current_setting('{TENANT_SETTING}', true))"
        )
    )
    await conn.execute(text(f"GRANT SELECT ON {table} TO {READER_ROLE}"))
