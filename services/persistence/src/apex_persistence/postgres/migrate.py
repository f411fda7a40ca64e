"""Schema migrations of the ``apex`` schema (Alembic, version table
``apex.alembic_version_persistence``), applied by the shared runner
``apex_runtime.pg.AlembicTree``."""

from __future__ import annotations

from pathlib import Path

from apex_persistence.postgres.tables import SCHEMA, VERSION_TABLE
from apex_runtime.pg import AlembicTree

TREE = AlembicTree(
    scripts=Path(__file__).parent / "migrations",
    schema=SCHEMA,
    version_table=VERSION_TABLE,
    lock="apex_persistence.migrate",
)


async def migrate(dsn: str, revision: str = "head", *, down: bool = False) -> None:
    """Upgrades the ``apex`` schema to ``revision`` (or downgrades to it when ``down``).
    Replicas starting together take turns: an advisory lock serialises them."""
    await TREE.migrate(dsn, revision, down=down)


async def current_revision(dsn: str) -> str | None:
    """The revision the database is at; None before the first migration (or after
    downgrading to base)."""
    return await TREE.current_revision(dsn)


async def schema_ready(dsn: str) -> bool:
    """True when the schema is at this release's head (or at a newer release's)."""
    return await TREE.schema_ready(dsn)
