"""Postgres access: the engine, the driver errors that mean "unavailable", and the two
kinds of transaction: the projector's (as the schema owner) and the reader's (as a
role subject to row-level security, scoped to one tenant)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from apex_contracts import validate_id
from apex_persistence.postgres.tables import READER_ROLE, TENANT_SETTING
from apex_runtime import pg


class PostgresUnavailable(Exception):
    """A server-side error that means "not now": the server is shutting down or starting,
    the connection broke, resources ran out, or a transaction lost a conflict."""


# SQLSTATE classes: connection exception, insufficient resources, operator
# intervention (shutdown, cannot connect now), system error, transaction rollback.
_TRANSIENT_SQLSTATE_CLASSES: Final = frozenset({"08", "53", "57", "58", "40"})

# "Postgres is not there right now", as opposed to a defect in a statement. asyncpg's
# errors reach us wrapped by SQLAlchemy (OperationalError, InterfaceError, or a generic
# DBAPIError that ``_transient`` classifies by SQLSTATE) or, while connecting, as the OS
# error itself.
PG_FAILURES: Final[tuple[type[BaseException], ...]] = (
    PostgresUnavailable,
    OperationalError,
    InterfaceError,
    OSError,
    TimeoutError,
)


def make_engine(dsn: str, *, pool_size: int = 5) -> AsyncEngine:
    """The shared engine factory (``apex_runtime.pg``) with a 15 s statement timeout."""
    return pg.make_engine(dsn, pool_size=pool_size, command_timeout_s=15.0)


@asynccontextmanager
async def _transient() -> AsyncIterator[None]:
    try:
        yield
    except DBAPIError as exc:
        if isinstance(exc, OperationalError | InterfaceError):
            raise
        state = str(getattr(exc.orig, "sqlstate", None) or "")
        if exc.connection_invalidated or state[:2] in _TRANSIENT_SQLSTATE_CLASSES:
            raise PostgresUnavailable(
                f"Postgres unavailable ({state or 'disconnected'}): {exc.orig}"
            ) from exc
        raise


class Database:
    """One engine, two ways in."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @asynccontextmanager
    async def writer(self) -> AsyncIterator[AsyncConnection]:
        """A transaction as the schema owner (row-level security does not apply)."""
        async with _transient(), self.engine.begin() as conn:
            yield conn

    @asynccontextmanager
    async def reader(self, tenant_id: str) -> AsyncIterator[AsyncConnection]:
        """A transaction that can only ever see ``tenant_id``'s rows: it runs as the
        reader role, whose row-level security policies compare each row with the
        tenant set here, so a query that forgets its tenant filter still sees one tenant."""
        tenant_id = validate_id(tenant_id, "ten")
        async with _transient(), self.engine.begin() as conn:
            await conn.execute(text(f"SET LOCAL ROLE {READER_ROLE}"))
            await conn.execute(
                text("SELECT set_config(:name, :tenant, true)"),
                {"name": TENANT_SETTING, "tenant": tenant_id},
            )
            yield conn

    async def close(self) -> None:
        await self.engine.dispose()
