"""Composition root of the persistence service: settings -> stores -> projections,
runners, read API and usage ingest, on one ``ServiceHost``. Nothing is built at import."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import orjson
import redis.asyncio as aioredis
from chdb import ChdbError
from clickhouse_connect.driver.exceptions import DatabaseError as ClickHouseDatabaseError
from pydantic import ValidationError

from apex_contracts import ErrorCode, ErrorInfo, Unavailable, UsageIngest, price_table
from apex_contracts.pricing import PriceCatalogue
from apex_contracts.streams import KV_LEASES, PROJECTED, RETIRED_CONSUMERS, USAGE_INGEST_CONSUMER
from apex_persistence.analytics import usage_batch
from apex_persistence.analytics.ddl import LATEST as ANALYTICS_LATEST
from apex_persistence.analytics.ddl import applied_versions, migrate_analytics
from apex_persistence.analytics.port import AnalyticsStore, open_store
from apex_persistence.analytics.projector import ClickHouseProjection
from apex_persistence.analytics.usage import UsageLedger
from apex_persistence.analytics.versions import BusVersions, Versions
from apex_persistence.api.ingest import UsageIngestHandler, build_ingest_router
from apex_persistence.api.queries import ReadApi, build_query_router
from apex_persistence.eraser import PROJECTORS, Eraser
from apex_persistence.hot import RedisProjection
from apex_persistence.postgres.cursors import CursorStore
from apex_persistence.postgres.db import PG_FAILURES, Database, make_engine
from apex_persistence.postgres.erasures import ErasureLedger
from apex_persistence.postgres.migrate import migrate, schema_ready
from apex_persistence.postgres.projector import AuditProjection, PostgresProjection
from apex_persistence.postgres.reads import HistoryReads
from apex_persistence.projection.ports import Projection
from apex_persistence.projection.runner import LagMonitor, ProjectorRunner
from apex_persistence.projection.shared import SharedFollow
from apex_persistence.rebuild.control import RebuildControl, Rebuilder
from apex_persistence.retention import RetentionSweeper
from apex_persistence.settings import PersistenceSettings
from apex_runtime import Bus, CircuitBreaker, ServiceHost, configure_logging, poison_guard
from apex_runtime.leases import Leases
from apex_runtime.schema import wait_until_ready

log = logging.getLogger(__name__)
SERVICE = "persistence"


@dataclass
class Stores:
    db: Database
    redis: aioredis.Redis
    analytics: AnalyticsStore


def open_stores(settings: PersistenceSettings, analytics: AnalyticsStore | None = None) -> Stores:
    return Stores(
        db=Database(make_engine(settings.postgres_dsn)),
        redis=aioredis.from_url(settings.redis_url, socket_timeout=5.0, socket_connect_timeout=3.0),
        analytics=analytics
        or open_store(
            settings.clickhouse_url,
            settings.chdb_path,
            settings.clickhouse_database,
            settings.clickhouse_cluster,
        ),
    )


def projections(
    stores: Stores, settings: PersistenceSettings, versions: Versions | None = None
) -> dict[str, tuple[Projection, str]]:
    """Each read model with the subject it is projected from."""
    return {
        "postgres": (PostgresProjection(stores.db), PROJECTED["postgres"]),
        "redis": (
            RedisProjection(stores.redis, keep=settings.redis_recent_events, ttl_s=settings.redis_ttl_s),
            PROJECTED["redis"],
        ),
        "clickhouse": (
            ClickHouseProjection(
                stores.analytics, versions=versions, checkpoint_every_s=settings.analytics_checkpoint_every_s
            ),
            PROJECTED["clickhouse"],
        ),
        "audit": (AuditProjection(stores.db), PROJECTED["audit"]),
    }


async def delete_retired_consumers(bus: Bus) -> None:
    """Deletes the durables the projectors pulled from before they followed the log, so
    JetStream stops keeping (and counting) their state. Idempotent; a failure is only
    logged: the next start tries again."""
    for stream, durable in RETIRED_CONSUMERS:
        subject = f"$JS.API.CONSUMER.DELETE.{stream}.{durable}"
        try:
            answer = orjson.loads(await bus.request(subject, b"", timeout=2.0))
        except (Unavailable, orjson.JSONDecodeError) as exc:
            log.warning("retired consumer %s of %s not deleted: %r", durable, stream, exc)
            continue
        if answer.get("success"):
            log.info("deleted the retired consumer %s of %s", durable, stream)


class PersistenceService:
    """The running service. An ``analytics`` store passed in (a test's own database of
    the process's one chdb engine) is used as is and left open at stop."""

    def __init__(self, settings: PersistenceSettings, *, analytics: AnalyticsStore | None = None) -> None:
        self.settings = settings
        self.host = ServiceHost(SERVICE, settings, settings.persistence_port)
        self.stores = open_stores(settings, analytics)
        self.owns_analytics = analytics is None
        self.runners: list[ProjectorRunner] = []
        self.rebuilds: RebuildControl | None = None
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def breaker(self, store: str) -> CircuitBreaker:
        return self.host.health.breaker(
            store, threshold=3, reset_after_s=2.0, code=ErrorCode.STORE_UNAVAILABLE
        )

    async def start(self) -> None:
        # with migrations off (the migration job applies them first), nothing here touches
        # a schema: replicas starting together never race on DDL
        if self.settings.migrate_on_start:
            await migrate(self.settings.postgres_dsn)
            await migrate_analytics(self.stores.analytics)
        bus = await self.host.connect()
        leases = Leases(await bus.bucket(KV_LEASES), self.settings.instance_id)
        shared = SharedFollow(bus.follow)  # the stores' projectors read the log once
        for name, (projection, subject) in projections(self.stores, self.settings, BusVersions(bus)).items():
            store = "postgres" if name == "audit" else name
            runner = ProjectorRunner(
                bus,
                projection,
                subject,
                self.breaker(store),
                leases=leases,
                shared=shared,
                lease_ttl_s=self.settings.projection_lease_ttl_s,
                batch_size=self.settings.projection_batch,
                linger_s=(
                    self.settings.analytics_linger_s
                    if store == "clickhouse"
                    else self.settings.projection_linger_s
                ),
            )
            self.runners.append(runner)
        self._wire_bus()
        await asyncio.to_thread(price_table.load)  # before the first run, not in it
        await asyncio.to_thread(usage_batch.warm)  # before the first upload
        await self.host.start()
        self.host.watch_consumers(USAGE_INGEST_CONSUMER)  # the upload backlog on /metrics
        await delete_retired_consumers(bus)
        for runner in self.runners:
            self._tasks.append(asyncio.create_task(runner.run(self._stop), name=f"project:{runner.store}"))
        lag = LagMonitor(bus, self.runners, self.host.health.details)
        self._tasks.append(asyncio.create_task(lag.run(self._stop), name="projection-lag"))
        await self._start_upkeep()

    async def _start_upkeep(self) -> None:
        """Erasures, retention and rebuilds: the work beside the projectors."""
        settings, stores = self.settings, self.stores
        eraser = Eraser(
            self.host.bus,
            ErasureLedger(stores.db),
            self.breaker("postgres"),
            [runner.projection for runner in self.runners if runner.store in PROJECTORS],
            every_s=settings.eraser_every_s,
        )
        sweeper = RetentionSweeper(
            settings.retention(),
            stores.db,
            stores.analytics,
            {name: self.breaker(name) for name in ("postgres", "clickhouse")},
            every_s=settings.retention_sweep_s,
            versions=BusVersions(self.host.bus),
        )
        self._tasks.append(asyncio.create_task(eraser.run(self._stop), name="eraser"))
        self._tasks.append(asyncio.create_task(sweeper.run(self._stop), name="retention"))
        rebuilder = Rebuilder(
            self.host.bus,
            stores.db,
            stores.redis,
            stores.analytics,
            retention=settings.retention(),
            redis_keep=settings.redis_recent_events,
            redis_ttl_s=settings.redis_ttl_s,
            batch=settings.rebuild_batch,
        )
        self.rebuilds = RebuildControl(rebuilder, settings.instance_id, self.host.health.details)
        await self.rebuilds.start()
        self._tasks.append(asyncio.create_task(self.rebuilds.run(self._stop), name="rebuilds"))

    def _wire_bus(self) -> None:
        ledger = UsageLedger(
            self.stores.analytics, PriceCatalogue.default(), versions=BusVersions(self.host.bus)
        )
        reads = ReadApi(
            HistoryReads(self.stores.db),
            ledger,
            CursorStore(self.stores.db),
            breakers={name: self.breaker(name) for name in ("postgres", "clickhouse")},
            failures={"postgres": PG_FAILURES, "clickhouse": self.stores.analytics.failures},
        )
        self.host.broker.add_middleware(
            poison_guard(self.host.bus.dead_letter, _on_poison, [USAGE_INGEST_CONSUMER])
        )
        self.host.include(build_query_router(reads))
        self.host.include(build_ingest_router(UsageIngestHandler(ledger, self.breaker("clickhouse"))))

    async def wait(self, stop: asyncio.Event) -> None:
        """Returns when ``stop`` is set; raises the error of a projector that died of a
        defect, so the process exits and its supervisor restarts it."""
        stopped = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait([stopped, *self._tasks], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        for task in self._tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                log.critical("%s died: %r", task.get_name(), task.exception())
                task.result()

    async def stop(self) -> None:
        self._stop.set()
        if self.rebuilds is not None:
            await self.rebuilds.stop()
        if self._tasks:
            _done, pending = await asyncio.wait(self._tasks, timeout=5.0)
            for task in pending:
                task.cancel()
            # A task's own failure was raised by ``wait``; here only the stop matters.
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._close_http_listener()
        await self.host.stop()
        await self.stores.db.close()
        await self.stores.redis.aclose()
        if self.owns_analytics:
            await self.stores.analytics.close()

    def _close_http_listener(self) -> None:
        """ServiceHost.stop cancels uvicorn before uvicorn closes its listening socket,
        which leaks the socket; closing the listener first is harmless (reported)."""
        server = getattr(self.host, "_http", None)
        for listener in getattr(server, "servers", None) or ():
            listener.close()


async def _on_poison(raw: bytes, error: ErrorInfo) -> None:
    """A usage batch that can never be stored is left in the dead-letter stream."""
    try:
        command = UsageIngest.model_validate_json(raw)
    except ValidationError:
        log.error("dead-lettered an unreadable usage command: %s", error.message)
        return
    log.error(
        "usage batch %s of %s dead-lettered: %s", command.data.batch_id, command.tenant_id, error.message
    )


async def main(stop: asyncio.Event, settings: PersistenceSettings | None = None) -> None:
    settings = settings or PersistenceSettings()
    configure_logging(SERVICE, settings.log_level, settings.log_format)
    service = PersistenceService(settings)
    await service.start()
    try:
        await service.wait(stop)
    finally:
        await service.stop()


async def run_migrations(settings: PersistenceSettings, *, down: str | None = None) -> None:
    """``migrate``: Postgres to head (or down to ``down``) and the ClickHouse DDL."""
    configure_logging(SERVICE, settings.log_level, settings.log_format)
    if down is not None:
        await migrate(settings.postgres_dsn, down, down=True)
        return
    await migrate(settings.postgres_dsn)
    analytics = open_store(
        settings.clickhouse_url, settings.chdb_path, settings.clickhouse_database, settings.clickhouse_cluster
    )
    try:
        await migrate_analytics(analytics)
    finally:
        await analytics.close()


# what reading the version table raises before it exists (server, embedded engine)
SCHEMA_MISSING: tuple[type[BaseException], ...] = (ClickHouseDatabaseError, ChdbError)


async def wait_for_schema(settings: PersistenceSettings, timeout_s: float) -> bool:
    """``wait-schema``: True once Postgres and ClickHouse are at this release's schema
    (what the migration job applies), False after ``timeout_s``."""
    configure_logging(SERVICE, settings.log_level, settings.log_format)
    analytics = open_store(
        settings.clickhouse_url, settings.chdb_path, settings.clickhouse_database, settings.clickhouse_cluster
    )

    async def ready() -> bool:
        if not await schema_ready(settings.postgres_dsn):
            return False
        try:
            versions = await applied_versions(analytics)
        except SCHEMA_MISSING:
            return False  # not even the version table: the job has not run yet
        return max(versions, default=0) >= ANALYTICS_LATEST

    try:
        return await wait_until_ready(
            ready, "persistence schema", timeout_s=timeout_s, failures=(*PG_FAILURES, *analytics.failures)
        )
    finally:
        await analytics.close()
