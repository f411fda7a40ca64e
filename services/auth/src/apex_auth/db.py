"""Postgres access of the auth service: its engine (the shared factory of
``apex_runtime.pg``), the driver errors it treats as "unavailable", its unit of work."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from apex_contracts import ErrorCode, Unavailable
from apex_runtime import pg

# Errors meaning "Postgres is not there right now", as opposed to a defect in a query. A
# connection pool with no free connection in time is the same for a caller: retry shortly.
STORE_ERRORS: tuple[type[Exception], ...] = (
    OperationalError,
    InterfaceError,
    OSError,
    TimeoutError,
    PoolTimeout,
)
# What a background loop retries: any failure of the driver, the query included.
STORE_FAILURES: tuple[type[Exception], ...] = (*STORE_ERRORS, DBAPIError)


def redacted(url: str) -> str:
    """``url`` without its password, for error messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()


def make_engine(dsn: str, *, pool_size: int = 5) -> AsyncEngine:
    """The shared engine factory (``apex_runtime.pg``) with auth's 10 s statement timeout."""
    return pg.make_engine(dsn, pool_size=pool_size, command_timeout_s=10.0)


async def check_reachable(engine: AsyncEngine, dsn: str) -> None:
    """Returns when Postgres answers; raises Unavailable naming the DSN otherwise."""
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except STORE_FAILURES as exc:
        raise Unavailable(
            f"Cannot reach Postgres at {redacted(dsn)}: {exc}", code=ErrorCode.STORE_UNAVAILABLE
        ) from exc


async def is_reachable(engine: AsyncEngine) -> bool:
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except STORE_FAILURES:
        return False
    return True


async def advisory_xact_lock(conn: AsyncConnection, name: str) -> None:
    """Serialises the rest of this transaction with every other holder of ``name``."""
    await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": name})


class Database:
    """The auth schema's unit of work: one transaction per use case, and hooks that run
    after each successful commit (the audit relay is woken that way)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._after_commit: list[Callable[[], None]] = []

    def after_commit(self, hook: Callable[[], None]) -> None:
        self._after_commit.append(hook)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """Commits when the block ends normally, rolls back when it raises."""
        async with self.engine.begin() as conn:
            yield conn
        for hook in self._after_commit:
            hook()
