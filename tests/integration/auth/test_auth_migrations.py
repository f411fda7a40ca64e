"""The auth schema migrates forward and backward, beside another service's Alembic tree."""

from __future__ import annotations

import asyncpg

from apex_auth import current_revision, migrate

TABLES = {
    "tenants",
    "users",
    "sessions",
    "refresh_tokens",
    "invites",
    "signing_keys",
    "audit_outbox",
    "service_accounts",
    "alembic_version_auth",
}
HEAD = "0002"


async def auth_tables(conn: asyncpg.Connection) -> set[str]:
    rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'auth'")
    return {row["tablename"] for row in rows}


async def test_upgrade_downgrade_upgrade_leaves_other_trees_alone(pg_dsn: str) -> None:
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute("CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)")
        await conn.execute("INSERT INTO alembic_version VALUES ('other_service_head')")

        assert await current_revision(pg_dsn) is None
        await migrate(pg_dsn)
        assert await current_revision(pg_dsn) == HEAD
        assert await auth_tables(conn) == TABLES
        await migrate(pg_dsn)  # idempotent
        assert await current_revision(pg_dsn) == HEAD

        await migrate(pg_dsn, "base", down=True)
        assert await current_revision(pg_dsn) is None
        assert await auth_tables(conn) == {"alembic_version_auth"}

        await migrate(pg_dsn)
        assert await current_revision(pg_dsn) == HEAD
        assert await auth_tables(conn) == TABLES
        assert await conn.fetchval("SELECT version_num FROM public.alembic_version") == ("other_service_head")
    finally:
        await conn.close()
