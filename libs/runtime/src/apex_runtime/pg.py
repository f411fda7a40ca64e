"""Postgres for every service that owns a schema: the one engine factory and the one
Alembic runner.

Each service (auth, persistence) keeps its own Alembic tree in its own schema of the
same database, with its own version table, so their migrations never see each other's
revisions. What they share is here: how a DSN becomes an engine (libpq's TLS parameters
turned into asyncpg's ``ssl`` argument by ``apex_runtime.pgtls``), and how a tree is
applied (an advisory lock, so replicas starting together take turns; the schema created
first; the revision read back for readiness checks).

Nothing here runs at import time; importing it needs SQLAlchemy and Alembic, which is
why ``apex_runtime`` does not import it from its package root.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from apex_runtime.pgtls import split_tls
from apex_runtime.schema import revision_ready

__all__ = ["AlembicTree", "async_dsn", "make_engine"]


def async_dsn(dsn: str) -> str:
    """``postgresql://…`` (how every Apex service is configured) for SQLAlchemy + asyncpg."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if dsn.startswith(prefix):
            return "postgresql+asyncpg://" + dsn.removeprefix(prefix)
    raise ValueError("APEX_POSTGRES_DSN must start with postgresql://")


def make_engine(dsn: str, *, pool_size: int = 5, command_timeout_s: float = 15.0) -> AsyncEngine:
    """An engine over ``dsn`` with bounded waits: 5 s to connect or to get a pooled
    connection, ``command_timeout_s`` per statement; stale pooled connections are
    replaced before use. libpq TLS parameters (``sslmode=verify-full`` ...) become
    asyncpg's ``ssl`` argument (``apex_runtime.pgtls``)."""
    url, tls = split_tls(async_dsn(dsn))
    connect_args: dict[str, object] = {"timeout": 5.0, "command_timeout": command_timeout_s}
    if tls is not None:
        connect_args["ssl"] = tls
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_timeout=5.0,
        connect_args=connect_args,
    )


@dataclass(frozen=True)
class AlembicTree:
    """One service's migrations: its Alembic scripts, the schema they own, the version
    table (in that schema) and the advisory lock its migrators take.

    The tree's ``env.py`` takes the open connection from ``config.attributes["connection"]``
    and names ``version_table`` in ``schema``; this runner hands it over."""

    scripts: Path
    schema: str
    version_table: str
    lock: str

    def config(self) -> Config:
        config = Config()
        config.set_main_option("script_location", str(self.scripts))
        return config

    async def migrate(self, dsn: str, revision: str = "head", *, down: bool = False) -> None:
        """Upgrades the schema to ``revision`` (or downgrades to it when ``down``).
        Replicas starting together take turns: an advisory lock serialises them."""
        engine = make_engine(dsn, pool_size=1)
        try:
            async with engine.connect() as conn:
                await conn.run_sync(self._run, revision, down)
        finally:
            await engine.dispose()

    def _run(self, conn: Connection, revision: str, down: bool) -> None:
        conn.execute(text("SELECT pg_advisory_lock(hashtext(:name))"), {"name": self.lock})
        try:
            conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"'))
            conn.commit()
            config = self.config()
            config.attributes["connection"] = conn
            if down:
                command.downgrade(config, revision)
            else:
                command.upgrade(config, revision)
            conn.commit()
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(hashtext(:name))"), {"name": self.lock})
            conn.commit()

    async def current_revision(self, dsn: str) -> str | None:
        """The revision the database is at; None before the first migration (or after
        downgrading to base)."""
        table = f"{self.schema}.{self.version_table}"
        engine = make_engine(dsn, pool_size=1)
        try:
            async with engine.connect() as conn:
                exists = await conn.scalar(text("SELECT to_regclass(:name) IS NOT NULL"), {"name": table})
                if not exists:
                    return None
                version = await conn.scalar(text(f"SELECT version_num FROM {table}"))
                return None if version is None else str(version)
        finally:
            await engine.dispose()

    def script_revisions(self) -> tuple[str, set[str]]:
        """This release's head revision and every revision it knows."""
        scripts = ScriptDirectory.from_config(self.config())
        head = scripts.get_current_head()
        if head is None:
            raise RuntimeError("no migration scripts")
        return head, {script.revision for script in scripts.walk_revisions()}

    async def schema_ready(self, dsn: str) -> bool:
        """True when the schema is at this release's head (or at a newer release's)."""
        head, known = self.script_revisions()
        return revision_ready(await self.current_revision(dsn), head, known)
