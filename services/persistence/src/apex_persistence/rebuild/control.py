"""Rebuilds inside the running service (the embedded ClickHouse can be opened by the
service process only), asked for on ``apex.ctl.persistence.rebuild`` (queue group
``persistence``: one instance takes each request).

Request: ``{"stores": ["postgres", "redis", "clickhouse"]}``. The instance answers on the
request's reply subject with a stream of JSON messages: ``accepted`` {instance},
``progress`` {store, position, head} (at most one a second per store), ``done`` {store,
events, seconds, rate, reached}, ``failed`` {store, error}, and last ``finished``. The
rebuild goes on if the asker goes away; its state is also in the heartbeat details
(``rebuild_<store>``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, Final, Literal

import orjson
from pydantic import ValidationError

from apex_contracts import ApexError, ErrorCode, InternalError, InvalidInput, Model, Unavailable
from apex_persistence.analytics.port import AnalyticsStore
from apex_persistence.analytics.versions import BusVersions
from apex_persistence.hot import REDIS_FAILURES
from apex_persistence.postgres.db import PG_FAILURES, Database
from apex_persistence.postgres.erasures import ErasureLedger
from apex_persistence.rebuild.clickhouse import FreshClickHouse
from apex_persistence.rebuild.fresh import FreshViews
from apex_persistence.rebuild.postgres import FreshPostgres
from apex_persistence.rebuild.procedure import RebuildReport, exclusive, rebuild
from apex_persistence.rebuild.redis import FreshRedis
from apex_persistence.rebuild.source import LogSource
from apex_persistence.settings import Retention
from apex_runtime import TRANSIENT_NATS_ERRORS, Bus, Notice, Subscription

log = logging.getLogger(__name__)
REBUILD_SUBJECT: Final = "apex.ctl.persistence.rebuild"
# Where a requester hears a rebuild's progress (``<prefix>.<unique>``): a rebuild outlives
# the one reply NATS lets a service send to a request's ``_INBOX`` (its bus permissions).
PROGRESS_PREFIX: Final = "apex.ctl.persistence.progress"
QUEUE: Final = "persistence"
REBUILDABLE: Final = ("postgres", "redis", "clickhouse")
Store = Literal["postgres", "redis", "clickhouse"]


class RebuildRequest(Model):
    stores: list[Store] = list(REBUILDABLE)


class Rebuilder:
    """Builds the fresh views of a store and runs its rebuild, one per store at a time."""

    def __init__(
        self,
        bus: Bus,
        db: Database,
        redis: Any,
        analytics: AnalyticsStore,
        *,
        retention: Retention,
        redis_keep: int,
        redis_ttl_s: int,
        batch: int = 1000,
    ) -> None:
        self.bus = bus
        self.db = db
        self.redis = redis
        self.analytics = analytics
        self.retention = retention
        self.redis_keep = redis_keep
        self.redis_ttl_s = redis_ttl_s
        self.batch = batch

    async def fresh(self, store: str) -> FreshViews:
        erasures = await ErasureLedger(self.db).all()
        if store == "postgres":
            return FreshPostgres(self.db, retention_cutoff=Retention.cutoff(self.retention.postgres_days))
        if store == "redis":
            return FreshRedis(self.redis, erasures, keep=self.redis_keep, ttl_s=self.redis_ttl_s)
        return FreshClickHouse(
            self.analytics,
            erasures,
            retention_cutoff=Retention.cutoff(self.retention.clickhouse_days),
            versions=BusVersions(self.bus),
        )

    async def run(self, store: str, progress: Callable[[str, int, int], None] | None = None) -> RebuildReport:
        async with exclusive(self.db, store):
            fresh = await self.fresh(store)
            source = LogSource(self.bus, self.db, batch=self.batch)
            return await rebuild(fresh, source, progress=progress)


class RebuildControl:
    """Serves rebuild requests; ``details`` are the heartbeat's."""

    def __init__(self, rebuilder: Rebuilder, instance: str, details: dict[str, float | int | str]) -> None:
        self.rebuilder = rebuilder
        self.instance = instance
        self.details = details
        self.tasks: set[asyncio.Task[None]] = set()
        self._sending: set[asyncio.Task[None]] = set()
        self._sub: Subscription | None = None
        self._defect: asyncio.Future[None] | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Returns when ``stop`` is set; raises the defect a rebuild died of, so that the
        service exits like it does for a projector's."""
        self._defect = asyncio.get_running_loop().create_future()
        stopped = asyncio.create_task(stop.wait())
        watched: list[asyncio.Future[Any]] = [stopped, self._defect]
        try:
            await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if self._defect.done():
            self._defect.result()

    async def start(self) -> None:
        self._sub = await self.rebuilder.bus.listen(REBUILD_SUBJECT, self._on_request, queue=QUEUE)

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.stop()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _on_request(self, msg: Notice) -> None:
        reply = msg.reply or None
        try:
            request = RebuildRequest.model_validate_json(msg.data or b"{}")
        except ValidationError as exc:
            await self._send(reply, {"type": "failed", "error": InvalidInput(str(exc)).info().model_dump()})
            return
        await self._send(reply, {"type": "accepted", "instance": self.instance, "stores": request.stores})
        task = asyncio.create_task(self._rebuild_all(request.stores, reply), name="rebuild")
        self.tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if task.cancelled() or (defect := task.exception()) is None:
            return
        if self._defect is not None and not self._defect.done():
            self._defect.set_exception(defect)

    async def _rebuild_all(self, stores: list[Store], reply: str | None) -> None:
        for store in stores:
            self.details[f"rebuild_{store}"] = "running"
            try:
                report = await self.rebuilder.run(store, self._progress(reply))
            except ApexError as exc:
                await self._failed(store, reply, exc)
                continue
            except self._store_failures() as exc:
                await self._failed(
                    store, reply, Unavailable(f"{store}: {exc!r}", code=ErrorCode.STORE_UNAVAILABLE)
                )
                continue
            except TRANSIENT_NATS_ERRORS as exc:
                await self._failed(
                    store, reply, Unavailable(f"the log: {exc!r}", code=ErrorCode.BUS_UNAVAILABLE)
                )
                continue
            except asyncio.CancelledError:
                await self._failed(
                    store, reply, Unavailable("the service is stopping", code=ErrorCode.SHUTTING_DOWN)
                )
                raise
            except BaseException as exc:
                # A defect: the asker hears of it, then the service exits (see ``run``).
                await self._failed(store, reply, InternalError(f"rebuild of {store} failed: {exc!r}"))
                raise
            self.details[f"rebuild_{store}"] = f"done {report.events} events in {report.seconds:.1f}s"
            await self._send(
                reply,
                {
                    "type": "done",
                    "store": store,
                    "events": report.events,
                    "seconds": round(report.seconds, 3),
                    "rate": round(report.rate),
                    "reached": report.reached,
                },
            )
        await self._send(reply, {"type": "finished"})

    def _store_failures(self) -> tuple[type[BaseException], ...]:
        return (*PG_FAILURES, *REDIS_FAILURES, *self.rebuilder.analytics.failures)

    async def _failed(self, store: str, reply: str | None, exc: ApexError) -> None:
        log.error("rebuild of %s failed: %s", store, exc.message)
        self.details[f"rebuild_{store}"] = f"failed: {exc.code}"
        await self._send(
            reply, {"type": "failed", "store": store, "error": exc.info().model_dump(mode="json")}
        )

    def _progress(self, reply: str | None) -> Callable[[str, int, int], None]:
        last = 0.0

        def report(store: str, position: int, head: int) -> None:
            nonlocal last
            self.details[f"rebuild_{store}"] = f"running {position}/{head}"
            now = time.monotonic()
            if reply is not None and now - last >= 1.0:
                last = now
                sent = asyncio.get_running_loop().create_task(
                    self._send(
                        reply, {"type": "progress", "store": store, "position": position, "head": head}
                    )
                )
                self._sending.add(sent)
                sent.add_done_callback(self._sending.discard)

        return report

    async def _send(self, reply: str | None, body: dict[str, Any]) -> None:
        if reply is None:
            return
        with _quiet():
            await self.rebuilder.bus.broadcast(reply, orjson.dumps(body))


def _quiet() -> contextlib.suppress:
    return contextlib.suppress(*TRANSIENT_NATS_ERRORS)
