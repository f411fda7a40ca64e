"""Runs a projection: a durable pull consumer of the bus (``Bus.pull``) read in batches, each batch
applied to the store, then acknowledged. A batch is acked only after the store has it,
so a crash between write and ack means redelivery, which the projection absorbs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from prometheus_client import Counter, Gauge

from apex_contracts.streams import ConsumerSpec
from apex_persistence.projection.delivery import Delivery, last_seq
from apex_persistence.projection.ports import Projection
from apex_runtime import TRANSIENT_NATS_ERRORS, Bus, CircuitBreaker, CircuitOpen, PullConsumer, Pulled

log = logging.getLogger(__name__)

LAG = Gauge(
    "apex_projection_lag_events", "events the projection has not applied and acknowledged yet", ["store"]
)
APPLIED = Counter("apex_projection_applied_events", "events applied per projection", ["store"])
FAILED = Counter("apex_projection_failed_batches", "batches that found the store unavailable", ["store"])


class ProjectorRunner:
    """Feeds one projection from its durable consumer until ``stop`` is set."""

    def __init__(
        self,
        bus: Bus,
        projection: Projection,
        spec: ConsumerSpec,
        breaker: CircuitBreaker,
        *,
        batch_size: int = 500,
        fetch_timeout_s: float = 1.0,
        linger_s: float = 0.02,
        max_backoff_s: float = 5.0,
    ) -> None:
        self.bus = bus
        self.projection = projection
        self.spec = spec
        self.breaker = breaker
        self.batch_size = batch_size
        self.fetch_timeout_s = fetch_timeout_s
        self.linger_s = linger_s
        self.max_backoff_s = max_backoff_s
        self.position = 0
        self._backoff_s = 0.0

    @property
    def _unavailable(self) -> tuple[type[BaseException], ...]:
        return (CircuitOpen, *self.projection.failures)

    @property
    def store(self) -> str:
        return self.projection.name

    async def run(self, stop: asyncio.Event) -> None:
        await self._load_position(stop)
        if stop.is_set():
            return
        sub = await self.bus.pull(self.spec)
        try:
            while not stop.is_set():
                await self.step(sub, stop)
        finally:
            await sub.stop()

    async def step(self, sub: PullConsumer, stop: asyncio.Event) -> None:
        """Fetches one batch and applies it; on a store failure naks it with a backoff."""
        if self.breaker.state == "open":
            await _sleep(stop, min(self.breaker.reset_after_s, self.max_backoff_s))
            return
        try:
            messages = await self._fetch(sub)
        except TRANSIENT_NATS_ERRORS as exc:
            log.warning("%s projection: cannot fetch from NATS: %r", self.store, exc)
            await _sleep(stop, 1.0)
            return
        if not messages:
            return
        batch = [Delivery(m.seq, m.subject, m.data) for m in messages]
        try:
            await self.breaker.call(lambda: self.projection.apply(batch), self.projection.failures)
        except self._unavailable as exc:
            await self._retry_later(messages, exc, stop)
            return
        self._backoff_s = 0.0
        self.position = max(self.position, last_seq(batch))
        APPLIED.labels(self.store).inc(len(batch))
        await _ack_all(messages)

    async def _fetch(self, sub: PullConsumer) -> list[Pulled]:
        """The first message as soon as there is one (waiting up to ``fetch_timeout_s``),
        then whatever else arrives within ``linger_s``, up to ``batch_size``. One fetch of
        the whole batch would hold every message until the batch is full or the fetch
        times out: up to a second of lag on a quiet stream."""
        messages = await sub.fetch(1, timeout=self.fetch_timeout_s)
        if messages and self.batch_size > 1:
            messages += await sub.fetch(self.batch_size - 1, timeout=self.linger_s)
        return messages

    async def _retry_later(self, messages: Sequence[Pulled], exc: BaseException, stop: asyncio.Event) -> None:
        FAILED.labels(self.store).inc()
        self._backoff_s = min(self.max_backoff_s, max(0.2, self._backoff_s * 2))
        log.warning(
            "%s projection: store unavailable, %d events redelivered in %.1fs: %r",
            self.store,
            len(messages),
            self._backoff_s,
            exc,
        )
        with contextlib.suppress(*TRANSIENT_NATS_ERRORS):
            for message in messages:
                await message.nak(self._backoff_s)
        await _sleep(stop, self._backoff_s)

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
    """Publishes each runner's lag as a gauge and in the health details, every ``every_s``.

    The lag is what the projector's durable consumer has not had acknowledged yet (not
    yet delivered + delivered and unacked): after a crash, a batch applied by nobody
    waits for its redelivery while newer ones go through, so "head minus the highest
    sequence applied" would say 0 too early. ``checkpoint_<store>`` is that highest
    sequence."""

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
        for runner in self.runners:
            try:
                state = await self.bus.consumer_state(runner.spec.stream, runner.spec.durable)
            except TRANSIENT_NATS_ERRORS:
                continue
            if state is None:  # not created yet
                continue
            lags[runner.store] = state.pending + state.ack_pending
            LAG.labels(runner.store).set(lags[runner.store])
            self.details[f"lag_{runner.store}"] = lags[runner.store]
            self.details[f"checkpoint_{runner.store}"] = runner.position
        return lags


async def _ack_all(messages: Sequence[Pulled]) -> None:
    try:
        for message in messages:
            await message.ack()
    except TRANSIENT_NATS_ERRORS as exc:
        log.warning("acks lost (%r): the batch will be redelivered and absorbed", exc)


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
