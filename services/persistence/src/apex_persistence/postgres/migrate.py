"""Schema migrations of the ``apex`` schema (Alembic, version table
``apex.alembic_version_persistence``)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text

from apex_persistence.postgres.db import make_engine
from apex_persistence.postgres.tables import SCHEMA, VERSION_TABLE
from apex_runtime.schema import revision_ready

_SCRIPTS = Path(__file__).parent / "migrations"
_LOCK = "apex_persistence.migrate"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    return config


async def migrate(dsn: str, revision: str = "head", *, down: bool = False) -> None:
    """Upgrades the ``apex`` schema to ``revision`` (or downgrades to it when ``down``).
    Replicas starting together take turns: an advisory lock serialises them."""
    engine = make_engine(dsn, pool_size=1)
    try:
        async with engine.connect() as conn:
            await conn.run_sync(_run, revision, down)
    finally:
        await engine.dispose()


def _run(conn: Connection, revision: str, down: bool) -> None:
    conn.execute(text("SELECT pg_advisory_lock(hashtext(:name))"), {"name": _LOCK})
    try:
        conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{SCHEMA}"'))
        conn.commit()
        config = alembic_config()
        config.attributes["connection"] = conn
        if down:
            command.downgrade(config, revision)
        else:
            command.upgrade(config, revision)
        conn.commit()
    finally:
        conn.execute(text("SELECT pg_advisory_unlock(hashtext(:name))"), {"name": _LOCK})
        conn.commit()


async def current_revision(dsn: str) -> str | None:
    """The revision the database is at; None before the first migration (or after
    downgrading to base)."""
    engine = make_engine(dsn, pool_size=1)
    try:
        async with engine.connect() as conn:
            exists = await conn.scalar(
                text("SELECT to_regclass(:name) IS NOT NULL"), {"name": f"{SCHEMA}.{VERSION_TABLE}"}
            )
            if not exists:
                return None
            version = await conn.scalar(text(f"SELECT version_num FROM {SCHEMA}.{VERSION_TABLE}"))
            return None if version is None else str(version)
    finally:
        await engine.dispose()


def script_revisions() -> tuple[str, set[str]]:
    """This release's head revision and every revision it knows."""
    scripts = ScriptDirectory.from_config(alembic_config())
    head = scripts.get_current_head()
    if head is None:
        raise RuntimeError("no migration scripts")
    return head, {script.revision for script in scripts.walk_revisions()}


async def schema_ready(dsn: str) -> bool:
    """True when the schema is at this release's head (or at a newer release's)."""
    head, known = script_revisions()
    return revision_ready(await current_revision(dsn), head, known)
