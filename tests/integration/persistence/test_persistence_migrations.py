"""Alembic upgrade / downgrade / upgrade of the apex schema (each revision, with data
carried across), and the versioned ClickHouse DDL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg
import pytest

from apex_contracts import new_id
from apex_persistence.analytics.ddl import _BOOTSTRAP, LATEST, VERSIONS, applied_versions, migrate_analytics
from apex_persistence.analytics.port import ChdbStore
from apex_persistence.postgres.migrate import current_revision, migrate

HEAD = "p0006"
TABLES = {
    "threads",
    "messages",
    "runs",
    "events",
    "projection_checkpoints",
    "audit_log",
    "erasures",
    "delivery_cursors",
    "archive_coverage",
}
NOT_TENANT_SCOPED = {"projection_checkpoints", "erasures", "archive_coverage"}


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
    assert await current_revision(pg_dsn) == HEAD
    tables = await _tables(pg_dsn)
    assert set(tables) == TABLES
    assert {name for name, rls in tables.items() if rls} == TABLES - NOT_TENANT_SCOPED

    await migrate(pg_dsn, "base", down=True)
    assert await current_revision(pg_dsn) is None
    assert await _tables(pg_dsn) == {}

    await migrate(pg_dsn)
    await migrate(pg_dsn)
    assert await current_revision(pg_dsn) == HEAD
    assert set(await _tables(pg_dsn)) == TABLES


async def test_p0002_carries_erased_threads_into_the_ledger_and_back(pg_dsn: str) -> None:
    await migrate(pg_dsn, "p0001")
    tenant, user, erased, kept = new_id("ten"), new_id("usr"), new_id("thr"), new_id("thr")
    at = datetime(2026, 3, 1, tzinfo=UTC)
    conn = await asyncpg.connect(pg_dsn)
    try:
        for thread, erased_at in ((erased, at), (kept, None)):
            await conn.execute(
                "INSERT INTO apex.threads (id, tenant_id, user_id, title, created_at, updated_at, erased_at) "
                "VALUES ($1, $2, $3, 't', $4, $4, $5)",
                thread,
                tenant,
                user,
                at,
                erased_at,
            )
        for n in (1, 2):
            await conn.execute(
                "INSERT INTO apex.audit_log (id, seq, tenant_id, action, outcome, at, service) "
                f"VALUES ('aud-entry-{n}', {n}, $1, 'auth.login', 'success', now(), 'auth')",
                tenant,
            )

        await migrate(pg_dsn, "p0002")
        assert await conn.fetchval("SELECT array_agg(id) FROM apex.threads") == [kept]
        ledger = await conn.fetchrow("SELECT * FROM apex.erasures")
        assert (ledger["kind"], ledger["thread_id"], ledger["requested_at"], ledger["purged_at"]) == (
            "thread",
            erased,
            at,
            None,
        )  # still to be purged from the log and audited
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await conn.execute("DELETE FROM apex.audit_log")
        async with conn.transaction():
            await conn.execute("SELECT set_config('apex.erasing', 'on', true)")
            await conn.execute("DELETE FROM apex.audit_log WHERE id = 'aud-entry-1'")  # an erasure may
        assert await conn.fetchval("SELECT count(*) FROM apex.audit_log") == 1
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await conn.execute("UPDATE apex.audit_log SET outcome = 'failure'")

        await migrate(pg_dsn, "p0001", down=True)
        rows = await conn.fetch("SELECT id, erased_at FROM apex.threads ORDER BY id")
        assert {(r["id"], r["erased_at"]) for r in rows} == {(erased, at), (kept, None)}
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            async with conn.transaction():
                await conn.execute("SELECT set_config('apex.erasing', 'on', true)")
                await conn.execute("DELETE FROM apex.audit_log")
    finally:
        await conn.close()


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
        assert await migrate_analytics(store) == [version for version, _ in VERSIONS]
        assert await migrate_analytics(store) == []
        assert await applied_versions(store) == {version for version, _ in VERSIONS}
        tables = await store.select(
            "SELECT name FROM system.tables WHERE database = {db:String}", {"db": store.database}
        )
        assert {t["name"] for t in tables} >= {
            "events",
            "llm_usage",
            "projection_checkpoints",
            "erased_threads",
            "erased_users",
        }
    finally:
        await store.command("DROP DATABASE IF EXISTS $db")


async def test_clickhouse_ddl_upgrades_a_version_1_database(chdb_engine: ChdbStore) -> None:
    store = chdb_engine.sibling("t_ddl_upgrade")
    try:
        for statement in (*_BOOTSTRAP, *VERSIONS[0][1]):
            await store.command(statement)
        await store.insert("schema_versions", [{"version": 1, "applied_at": "2026-01-01 00:00:00.000"}])
        await store.insert(
            "events",
            [
                {
                    "tenant_id": "t",
                    "user_id": "u",
                    "thread_id": "h",
                    "seq": 1,
                    "id": "e",
                    "type": "run.accepted",
                    "occurred_at": "2026-01-01 00:00:00.000",
                    "payload": "{}",
                }
            ],
        )
        assert await migrate_analytics(store) == list(range(2, LATEST + 1))
        assert (await store.select("SELECT count() AS n FROM $db.events", {}))[0]["n"] in (1, "1")
    finally:
        await store.command("DROP DATABASE IF EXISTS $db")


async def test_no_code_holding_the_writer_role_can_switch_the_audit_guard_off(pg_dsn: str) -> None:
    """A login that holds ``apex_writer`` (what persistence writes as) and nothing else: it
    adds and reads entries, deletes an erased user's entries and expired ones through the
    two functions only, and every way to change, delete or unguard an entry is refused."""
    await migrate(pg_dsn)
    login = f"writer_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(pg_dsn)
    await admin.execute(
        f"CREATE ROLE {login} LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB; GRANT apex_writer TO {login}"
    )
    tenant, erased, other = new_id("ten"), new_id("usr"), new_id("usr")
    conn = await asyncpg.connect(pg_dsn.replace("postgres@", f"{login}@", 1))
    try:
        old = datetime(2020, 1, 1, tzinfo=UTC)
        rows = [
            ("e-actor", erased, None, "auth.login", None),
            ("e-target", other, f"user:{erased}", "auth.session_revoked", None),
            ("e-record", other, f"user:{erased}", "data.erased", None),
            ("o-recent", other, None, "auth.login", None),
            ("o-old", other, None, "auth.login", old),
        ]
        for n, (entry, actor, target, action, at) in enumerate(rows, start=1):
            await conn.execute(
                "INSERT INTO apex.audit_log (id, seq, tenant_id, action, outcome, at, service, actor_user_id, target)"
                " VALUES ($1, $2, $3, $4, 'success', coalesce($5, now()), 'auth', $6, $7)",
                entry,
                n,
                tenant,
                action,
                at,
                actor,
                target,
            )
        attempts = [
            "UPDATE apex.audit_log SET outcome = 'failure'",
            "DELETE FROM apex.audit_log",
            "SELECT set_config('apex.erasing', 'on', true); DELETE FROM apex.audit_log",
            "TRUNCATE apex.audit_log",
            "ALTER TABLE apex.audit_log DISABLE TRIGGER ALL",
            "ALTER TABLE apex.audit_log DISABLE TRIGGER audit_log_append_only",
            "DROP TRIGGER audit_log_append_only ON apex.audit_log",
            "CREATE OR REPLACE FUNCTION apex.audit_log_append_only() RETURNS trigger LANGUAGE plpgsql"
            " AS $$ BEGIN RETURN OLD; END $$",
            "ALTER FUNCTION apex.audit_log_append_only() RENAME TO unguarded",
            f"ALTER TABLE apex.audit_log OWNER TO {login}",
            "ALTER TABLE apex.audit_log RENAME TO audit_log_old",
            "DROP TABLE apex.audit_log",
            "SET session_replication_role = replica",
            "SET ROLE apex_audit",
            "GRANT DELETE ON apex.audit_log TO apex_writer; DELETE FROM apex.audit_log",  # grants nothing
            "CREATE FUNCTION apex.wipe() RETURNS void LANGUAGE sql SECURITY DEFINER AS $$ DELETE FROM apex.audit_log $$",
            f"SELECT apex.audit_erase_user('{tenant}', '')",
            f"SELECT apex.audit_erase_user('{tenant}', '%')",
            "SELECT apex.audit_expire(now())",
        ]
        for attempt in attempts:
            with pytest.raises(asyncpg.PostgresError):
                async with conn.transaction():
                    await conn.execute(attempt)
        assert await conn.fetchval("SELECT count(*) FROM apex.audit_log") == len(rows)

        assert await conn.fetchval("SELECT apex.audit_erase_user($1, $2)", tenant, erased) == 2
        assert await conn.fetchval("SELECT apex.audit_expire(now() - interval '30 days')") == 1
        left = await conn.fetch("SELECT id FROM apex.audit_log ORDER BY id")
        assert [r["id"] for r in left] == ["e-record", "o-recent"]
    finally:
        await conn.close()
        await admin.execute(f"DROP ROLE IF EXISTS {login}")
        await admin.close()
