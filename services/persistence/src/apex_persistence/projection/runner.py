"""Runs a projection: an ordered consumer of the log (``Bus.follow``) from the projection's
own checkpoint, its batches applied in stream order. Nothing is acknowledged: the store's
checkpoint (its tracking record) is the position, so a restart or a takeover follows on
from it, and what a crash left applied but not checkpointed is applied again, which the
projection absorbs. One JetStream message per event reaches the process, and none goes
back: the projectors of one process that follow the same subject share one consumer
while they are level with it (``SharedFollow``).

One replica at a time projects a store: it holds the lease ``projector.<store>``
(``apex_runtime.leases``), the others stand by and take over once the holder lets it go
(a stop) or it expires (a crash: within ``lease_ttl_s``). A holder that loses its lease
stops after the batch in hand; two writers for that moment are safe, because a projection
absorbs any replay. When the store fails, the runner stops following (nothing piles up in
memory), retries the batch in hand with a backoff, and follows again from there."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence

from prometheus_client import Counter, Gauge

from apex_contracts import Unavailable
from apex_contracts.streams import STREAMS
from apex_persistence.projection.delivery import Delivery
from apex_persistence.projection.ports import DefersCheckpoint, Projection
from apex_persistence.projection.shared import FOLLOW_FAILURES, SharedFollow
from apex_runtime import Bus, CircuitBreaker, CircuitOpen, Stored
from apex_runtime.leases import Lease, Leases
from apex_runtime.port import stream_holding

log = logging.getLogger(__name__)

LAG = Gauge("apex_projection_lag_events", "events the projection has not applied yet", ["store"])
APPLIED = Counter("apex_projection_applied_events", "events applied per projection", ["store"])
FAILED = Counter("apex_projection_failed_batches", "batches that found the store unavailable", ["store"])


Arrived = tuple[float, Stored]  # (when it was handed to the runner, on its clock; the message)


class ProjectorRunner:
    """Feeds one projection from the log until ``stop`` is set. Without ``leases`` it
    projects unconditionally (one process, or a test)."""

    def __init__(
        self,
        bus: Bus,
        projection: Projection,
        subject: str,
        breaker: CircuitBreaker,
        *,
        leases: Leases | None = None,
        shared: SharedFollow | None = None,
        lease_ttl_s: float = 10.0,
        batch_size: int = 500,
        linger_s: float = 0.02,
        wait_s: float = 1.0,
        max_backoff_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bus = bus
        self.projection = projection
        self.subject = subject
        self.stream = stream_holding(STREAMS, subject) or ""
        self.breaker = breaker
        self.leases = leases
        self.shared = shared
        self.lease_ttl_s = lease_ttl_s
        self.batch_size = batch_size
        self.linger_s = linger_s
        self.wait_s = wait_s
        self.max_backoff_s = max_backoff_s
        self.clock = clock
        self.position = 0
        self.active = False  # projecting (holding the lease, or without leases)
        self.following = False
        self._received = 0  # delivered to this runner since it last followed
        self._applied = 0
        self._pending = -1  # what the consumer still had after the last delivery
        self._backoff_s = 0.0

    @property
    def store(self) -> str:
        return self.projection.name

    @property
    def _unavailable(self) -> tuple[type[BaseException], ...]:
        return (CircuitOpen, *self.projection.failures)

    @property
    def knows_lag(self) -> bool:
        return self.following and self._pending >= 0

    def lag(self, head: int = 0) -> int:
        """Events not applied yet: exact while following (what the consumer still has plus
        what is in hand), else the stream's ``head`` less the position."""
        if self.knows_lag:
            return self._pending + self._received - self._applied
        return max(0, head - self.position)

    async def run(self, stop: asyncio.Event) -> None:
        if self.leases is None:
            await self._project(stop, None)
            return
        name = f"projector.{self.store}"
        while not stop.is_set():
            try:
                lease = await self.leases.try_acquire(name, self.lease_ttl_s)
            except Unavailable as exc:
                log.warning("%s projection: cannot ask for its lease: %r", self.store, exc)
                lease = None
            if lease is None:  # another replica projects this store
                await _sleep(stop, self.lease_ttl_s / 3)
                continue
            log.info("%s projection: this replica projects it now", self.store)
            async with self.leases.keep(lease, self.lease_ttl_s):
                await self._project(stop, lease)

    async def _project(self, stop: asyncio.Event, lease: Lease | None) -> None:
        self.active = True
        try:
            await self._load_position(stop)
            while not _over(stop, lease):
                unapplied = await self._follow(stop, lease)
                if unapplied:
                    await self._retry(unapplied, stop, lease)
        finally:
            self.active = False

    async def _follow(self, stop: asyncio.Event, lease: Lease | None) -> list[Delivery]:
        """Follows the log from the position, applying batch after batch; returns the batch
        the store refused (the follow is over then), or nothing when asked to stop."""
        queue: asyncio.Queue[Arrived] = asyncio.Queue(maxsize=self.batch_size)

        async def deliver(stored: Stored) -> None:
            self._received += 1
            self._pending = stored.pending
            await queue.put((self.clock(), stored))  # a full queue holds the consumer back (flow control)

        self._received = self._applied = 0
        self._pending = -1
        try:
            if self.shared is None:
                sub = await self.bus.follow(self.subject, deliver, after_seq=self.position)
            else:
                sub = await self.shared.follow(
                    self.subject, deliver, after_seq=self.position, ready=lambda: not queue.full()
                )
        except FOLLOW_FAILURES as exc:
            log.warning("%s projection: cannot follow the log: %r", self.store, exc)
            await _sleep(stop, 1.0)
            return []
        self.following = True
        try:
            while not _over(stop, lease):
                batch = await self._take(queue)
                if not batch:
                    await self._flush()
                    continue
                try:
                    await self._apply(batch)
                except self._unavailable as exc:
                    self._failed(batch, exc)
                    return batch
        finally:
            self.following = False
            await sub.stop()
            await self._flush()
        return []

    async def _flush(self) -> None:
        """Writes a checkpoint the projection deferred (the log went quiet, or the follow
        ends); when the store cannot take it, a later batch or quiet moment will."""
        if not isinstance(self.projection, DefersCheckpoint):
            return
        try:
            await self.breaker.call(self.projection.flush, self.projection.failures)
        except self._unavailable as exc:
            log.warning("%s projection: checkpoint left for later: %r", self.store, exc)

    async def _take(self, queue: asyncio.Queue[Arrived]) -> list[Delivery]:
        """The first event as soon as there is one (waiting up to ``wait_s``), then what
        else arrives until ``linger_s`` after the first one arrived, up to ``batch_size``.
        The linger counts from the arrival: an event that waited while the last batch was
        written has lingered already, so under load no event waits a write and a linger
        on top of it."""
        try:
            arrived, first = await asyncio.wait_for(queue.get(), self.wait_s)
        except TimeoutError:
            return []
        stored = [first]
        if self.batch_size > 1 and queue.qsize() < self.batch_size - 1:
            left = self.linger_s - (self.clock() - arrived)
            if left > 0:
                await asyncio.sleep(left)
        while len(stored) < self.batch_size and not queue.empty():
            stored.append(queue.get_nowait()[1])
        return [Delivery(s.seq, s.subject, s.data) for s in stored]

    async def _apply(self, batch: Sequence[Delivery]) -> None:
        await self.breaker.call(lambda: self.projection.apply(batch), self.projection.failures)
        self._backoff_s = 0.0
        self._applied += len(batch)
        self.position = max(self.position, batch[-1].seq)
        APPLIED.labels(self.store).inc(len(batch))

    async def _retry(self, batch: list[Delivery], stop: asyncio.Event, lease: Lease | None) -> None:
        """Applies the refused batch once the store takes it again (or gives it up when
        the runner stops or loses its lease: the next holder reads it from the log)."""
        while not _over(stop, lease):
            await _sleep(stop, max(self._backoff_s, self.breaker.reset_after_s if self._open() else 0.0))
            if _over(stop, lease):
                return
            try:
                await self._apply(batch)
            except self._unavailable as exc:
                self._failed(batch, exc)
                continue
            return

    def _open(self) -> bool:
        return self.breaker.state == "open"

    def _failed(self, batch: Sequence[Delivery], exc: BaseException) -> None:
        FAILED.labels(self.store).inc()
        self._backoff_s = min(self.max_backoff_s, max(0.2, self._backoff_s * 2))
        log.warning(
            "%s projection: store unavailable, %d events retried in %.1fs: %r",
            self.store,
            len(batch),
            self._backoff_s,
            exc,
        )

    async def _load_position(self, stop: asyncio.Event) -> None:
        delay = 0.2
        while not stop.is_set():
            try:
                self.position = await self.breaker.call(self.projection.position, self.projection.failures)
            except self._unavailable as exc:
                log.warning("%s projection: cannot read the checkpoint yet: %r", self.store, exc)
                await _sleep(stop, delay)
                delay = min(self.max_backoff_s, delay * 2)
                continue
            return


class LagMonitor:
    """Publishes each active runner's lag as a gauge and in the health details, every
    ``every_s``: ``lag_<store>`` (events not applied yet), ``checkpoint_<store>`` (the
    position) and ``projector_<store>`` (``active`` here, ``standby`` while another replica
    holds the store's lease; a standby reports no lag)."""

    def __init__(
        self,
        bus: Bus,
        runners: Sequence[ProjectorRunner],
        details: dict[str, float | int | str],
        every_s: float = 2.0,
    ) -> None:
        self.bus = bus
        self.runners = runners
        self.details = details
        self.every_s = every_s

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.measure()
            await _sleep(stop, self.every_s)

    async def measure(self) -> dict[str, int]:
        lags: dict[str, int] = {}
        heads: dict[str, int] = {}
        for runner in self.runners:
            store = runner.store
            if not runner.active:
                self.details[f"projector_{store}"] = "standby"
                for key in (f"lag_{store}", f"checkpoint_{store}"):
                    self.details.pop(key, None)
                with contextlib.suppress(KeyError):
                    LAG.remove(store)
                continue
            if not runner.knows_lag and runner.stream not in heads:
                try:
                    heads[runner.stream] = await self.bus.head_seq(runner.stream)
                except FOLLOW_FAILURES:
                    continue
            lags[store] = runner.lag(heads.get(runner.stream, 0))
            LAG.labels(store).set(lags[store])
            self.details[f"projector_{store}"] = "active"
            self.details[f"lag_{store}"] = lags[store]
            self.details[f"checkpoint_{store}"] = runner.position
        return lags


def _over(stop: asyncio.Event, lease: Lease | None) -> bool:
    return stop.is_set() or (lease is not None and lease.lost)


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
