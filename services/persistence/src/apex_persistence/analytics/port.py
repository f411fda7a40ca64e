"""The analytics store port and its two adapters: the embedded engine (chdb) and a
ClickHouse server (clickhouse-connect). Both run the same SQL: statements name their
database as ``$db``, parameters are bound server-side as ``{name:Type}`` (formatted the
same way for both), rows come back as JSONEachRow. The drivers block, so every call
runs on the adapter's own executor; chdb gets exactly one thread, since only one
process, and within it one connection, may hold an embedded data path.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, TypeVar

import orjson
import pyarrow as pa
from chdb import ChdbError
from clickhouse_connect.driver.binding import format_bind_value, must_escape
from clickhouse_connect.driver.exceptions import OperationalError as ClickHouseOperationalError

from apex_persistence.analytics.cluster import clustered

T = TypeVar("T")


class AnalyticsUnavailable(Exception):
    """The analytics engine could not be opened or reached."""


class AnalyticsStore(Protocol):
    """ClickHouse, wherever it runs. Every method raises one of ``failures`` when the
    engine is unavailable; SQL text is shared by all adapters."""

    database: str
    failures: tuple[type[BaseException], ...]

    def qualify(self, sql: str) -> str:
        """The SQL as the engine runs it: ``$db`` replaced by the database name."""
        ...

    async def command(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        """Runs a statement that returns nothing (DDL, DELETE); ``$db`` is the database."""
        ...

    async def insert(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Inserts JSON-serialisable rows into ``<database>.<table>`` as one block."""
        ...

    async def insert_arrow(self, table: str, data: pa.Table) -> None:
        """Inserts an Arrow table (its columns by name) into ``<database>.<table>``."""
        ...

    async def select(self, sql: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Runs a query with parameters bound by the server; returns each row as a dict
        decoded from JSONEachRow (DateTime64 as ``YYYY-MM-DD hh:mm:ss.sss`` text)."""
        ...

    def sibling(self, database: str) -> AnalyticsStore:
        """A store over another database of the same engine or server (a rebuild's fresh
        table set); closing it leaves this one open."""
        ...

    async def close(self) -> None:
        """Releases the engine; the store is unusable afterwards."""
        ...


class _BlockingStore:
    """What both adapters share: SQL qualification, row encoding, the executor."""

    failures: tuple[type[BaseException], ...] = (AnalyticsUnavailable,)

    def __init__(
        self, database: str, executor: ThreadPoolExecutor, read_executor: ThreadPoolExecutor | None = None
    ) -> None:
        self.database = database
        self._executor = executor
        self._read_executor = read_executor or executor

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def qualify(self, sql: str) -> str:
        return sql.replace("$db", self.database)

    async def command(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        await self._call(self._command, self.qualify(sql), dict(params or {}))

    async def insert(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        if rows:
            body = b"\n".join(orjson.dumps(row) for row in rows)
            await self._call(self._insert, f"{self.database}.{table}", body)

    async def insert_arrow(self, table: str, data: pa.Table) -> None:
        if data.num_rows:
            await self._call(self._insert_arrow, f"{self.database}.{table}", data)

    async def select(self, sql: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        raw = await loop.run_in_executor(self._read_executor, self._select, self.qualify(sql), dict(params))
        return [orjson.loads(line) for line in raw.splitlines() if line.strip()]

    def _command(self, sql: str, params: dict[str, Any]) -> None:
        raise NotImplementedError

    def _insert(self, table: str, body: bytes) -> None:
        raise NotImplementedError

    def _insert_arrow(self, table: str, data: pa.Table) -> None:
        raise NotImplementedError

    def _select(self, sql: str, params: dict[str, Any]) -> bytes:
        raise NotImplementedError


class _ChdbEngine:
    """The process's one embedded engine, opened on first use: one connection for writes
    and statements on its own thread, and a connection per read thread. A tool's queries
    run side by side, never behind a projection's insert."""

    READ_THREADS = 3

    def __init__(self, path: Path) -> None:
        self.path = path
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chdb")
        self.read_executor = ThreadPoolExecutor(max_workers=self.READ_THREADS, thread_name_prefix="chdb-read")
        self._session: Any = None
        self._local = threading.local()
        self._readers: list[Any] = []
        self._lock = threading.Lock()

    def session(self) -> Any:
        if self._session is None:
            from chdb import session

            self.path.mkdir(parents=True, exist_ok=True)
            try:
                open_session: Any = session.Session
                self._session = open_session(str(self.path))
            except RuntimeError as exc:
                raise AnalyticsUnavailable(
                    f"cannot open the embedded ClickHouse at {self.path}: {exc}"
                ) from exc
        return self._session

    def reader(self) -> Any:
        """This read thread's connection (the session, opened first, makes the folder)."""
        reader = getattr(self._local, "reader", None)
        if reader is None:
            with self._lock:
                if self._session is None:
                    self.session()
            import chdb

            try:
                reader = self._local.reader = chdb.connect(str(self.path))
            except RuntimeError as exc:
                raise AnalyticsUnavailable(
                    f"cannot open the embedded ClickHouse at {self.path}: {exc}"
                ) from exc
            with self._lock:
                self._readers.append(reader)
        return reader

    def close_readers(self) -> None:
        with self._lock:
            readers, self._readers = self._readers, []
        for reader in readers:
            reader.close()

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None


class ChdbStore(_BlockingStore):
    """The embedded engine, with its data under ``path``."""

    failures: tuple[type[BaseException], ...] = (ChdbError, AnalyticsUnavailable)

    def __init__(self, path: Path, database: str = "apex", *, engine: _ChdbEngine | None = None) -> None:
        self._engine = engine or _ChdbEngine(path)
        self._owns_engine = engine is None
        super().__init__(database, self._engine.executor, self._engine.read_executor)

    def sibling(self, database: str) -> ChdbStore:
        """A store over another database of the same engine (a fresh table set, or a
        test's own namespace); closing it leaves the engine open."""
        return ChdbStore(self._engine.path, database, engine=self._engine)

    async def close(self) -> None:
        if self._owns_engine:
            self._read_executor.shutdown(wait=True)
            self._engine.close_readers()
            await self._call(self._engine.close)
            self._executor.shutdown(wait=True)

    def _command(self, sql: str, params: dict[str, Any]) -> None:
        self._engine.session().query(sql, params=_bound(params))

    def _insert(self, table: str, body: bytes) -> None:
        self._engine.session().query(f"INSERT INTO {table} FORMAT JSONEachRow\n{body.decode()}")

    def _insert_arrow(self, table: str, data: pa.Table) -> None:
        names = ", ".join(data.column_names)
        arrow_batch = data  # chdb's Python() table function finds the table by this local name
        self._engine.session().query(f"INSERT INTO {table} ({names}) SELECT {names} FROM Python(arrow_batch)")
        del arrow_batch

    def _select(self, sql: str, params: dict[str, Any]) -> bytes:
        return bytes(self._engine.reader().query(sql, "JSONEachRow", params=_bound(params)).bytes())


class ClickHouseServerStore(_BlockingStore):
    """A ClickHouse server at ``url`` (``http(s)://user:password@host:port``)."""

    failures: tuple[type[BaseException], ...] = (ClickHouseOperationalError, AnalyticsUnavailable)

    def __init__(
        self, url: str, database: str = "apex", workers: int = 4, cluster: str | None = None
    ) -> None:
        super().__init__(database, ThreadPoolExecutor(max_workers=workers, thread_name_prefix="clickhouse"))
        self.url = url
        self.cluster = cluster
        self._client: Any = None

    def sibling(self, database: str) -> ClickHouseServerStore:
        return ClickHouseServerStore(self.url, database, workers=2, cluster=self.cluster)

    def qualify(self, sql: str) -> str:
        """On a cluster, schema statements run ``ON CLUSTER`` with replicated engines."""
        return clustered(super().qualify(sql), self.cluster)

    async def close(self) -> None:
        await self._call(self._close)
        self._executor.shutdown(wait=True)

    def _open(self) -> Any:
        if self._client is None:
            import clickhouse_connect

            self._client = clickhouse_connect.get_client(dsn=self.url, autogenerate_session_id=False)
        return self._client

    def _command(self, sql: str, params: dict[str, Any]) -> None:
        self._open().command(sql, parameters=params or None)

    def _insert(self, table: str, body: bytes) -> None:
        self._open().raw_insert(table, insert_block=body, fmt="JSONEachRow")

    def _insert_arrow(self, table: str, data: pa.Table) -> None:
        self._open().insert_arrow(table, data)

    def _select(self, sql: str, params: dict[str, Any]) -> bytes:
        return bytes(self._open().raw_query(sql, parameters=params, fmt="JSONEachRow"))

    def _close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _bound(params: dict[str, Any]) -> dict[str, str]:
    """Parameters as the server receives them from clickhouse-connect (same escaping)."""
    return {name: _bind(value) for name, value in params.items()}


_ESCAPED = str.maketrans({c: "\\" + c for c in must_escape})


def _bind(value: Any) -> str:
    """``format_bind_value``, but a list of strings (a duplicate check's 5,000 keys) is
    escaped a string at a time, not a character at a time (5.5 ms instead of 18)."""
    if isinstance(value, list) and all(type(v) is str for v in value):
        return "[" + ", ".join(f"'{v.translate(_ESCAPED)}'" for v in value) + "]"
    return str(format_bind_value(value))


def open_store(url: str | None, chdb_path: Path, database: str, cluster: str | None = None) -> AnalyticsStore:
    """A server store when ``url`` is set (on ``cluster``, replicated), the embedded
    engine otherwise."""
    return ClickHouseServerStore(url, database, cluster=cluster) if url else ChdbStore(chdb_path, database)
