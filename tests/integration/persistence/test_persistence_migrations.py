"""Alembic upgrade / downgrade / upgrade of the apex schema, and the versioned
ClickHouse DDL."""

from __future__ import annotations

import asyncpg

from apex_persistence.analytics.ddl import LATEST, applied_versions, migrate_analytics
from apex_persistence.analytics.port import ChdbStore
from apex_persistence.postgres.migrate import current_revision, migrate

TABLES = {"threads", "messages", "runs", "events", "projection_checkpoints", "audit_log"}


async def _tables(dsn: str) -> dict[str, bool]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT c.relname, c.relrowsecurity FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'apex' AND c.relkind = 'r' AND c.relname <> 'alembic_version_persistence'"
        )
    finally:
        await conn.close()
    return {row["relname"]: row["relrowsecurity"] for row in rows}


async def test_upgrade_downgrade_upgrade(pg_dsn: str) -> None:
    assert await current_revision(pg_dsn) is None
    await migrate(pg_dsn)
    assert await current_revision(pg_dsn) == "p0001"
    tables = await _tables(pg_dsn)
    assert set(tables) == TABLES
    assert {name for name, rls in tables.items() if rls} == TABLES - {"projection_checkpoints"}

    await migrate(pg_dsn, "base", down=True)
    assert await current_revision(pg_dsn) is None
    assert await _tables(pg_dsn) == {}

    await migrate(pg_dsn)
    await migrate(pg_dsn)
    assert await current_revision(pg_dsn) == "p0001"
    assert set(await _tables(pg_dsn)) == TABLES


async def test_another_services_schema_is_left_alone(pg_dsn: str) -> None:
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute("CREATE SCHEMA auth; CREATE TABLE auth.alembic_version_auth (version_num text)")
        await conn.execute("INSERT INTO auth.alembic_version_auth VALUES ('0001')")
        await migrate(pg_dsn)
        await migrate(pg_dsn, "base", down=True)
        assert await conn.fetchval("SELECT version_num FROM auth.alembic_version_auth") == "0001"
    finally:
        await conn.close()


async def test_clickhouse_ddl_is_versioned_and_idempotent(chdb_engine: ChdbStore) -> None:
    store = chdb_engine.sibling("t_ddl_versions")
    try:
        assert await migrate_analytics(store) == [LATEST]
        assert await migrate_analytics(store) == []
        assert await applied_versions(store) == {LATEST}
        tables = await store.select("SELECT name FROM system.tables WHERE database = {db:String}",
                                    {"db": store.database})
        assert {t["name"] for t in tables} >= {"events", "llm_usage", "projection_checkpoints", "erased_threads"}
    finally:
        await store.command("DROP DATABASE IF EXISTS $db")
