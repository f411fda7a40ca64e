"""How far behind a service's command consumers are: the messages waiting in each durable
consumer (not yet delivered) and those delivered but not yet acknowledged, read from
JetStream every few seconds and shown on /metrics (``apex_consumer_*``) and in the
heartbeat (``<durable>_pending``). Every replica reads the same shared consumer, so the
figures are the consumer's, not the replica's."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

import nats.js.errors
from prometheus_client import Gauge

from apex_contracts.streams import ConsumerSpec
from apex_runtime.bus import Bus
from apex_runtime.ops import Health
from apex_runtime.topology import TRANSIENT_NATS_ERRORS

log = logging.getLogger(__name__)
# a consumer not created yet, or the bus unavailable: read again next turn
_NOT_READ: tuple[type[BaseException], ...] = (nats.js.errors.NotFoundError, *TRANSIENT_NATS_ERRORS)

PENDING = Gauge(
    "apex_consumer_pending_messages",
    "Commands waiting in a durable consumer, not yet delivered to any worker",
    ["service", "consumer"],
)
ACK_PENDING = Gauge(
    "apex_consumer_ack_pending_messages",
    "Commands delivered to a worker and not yet acknowledged (in progress or about to be redelivered)",
    ["service", "consumer"],
)
REDELIVERED = Gauge(
    "apex_consumer_redelivered_messages",
    "Commands of the consumer currently out for a second or later delivery",
    ["service", "consumer"],
)


async def watch_consumer_lag(
    bus: Bus,
    health: Health,
    consumers: Iterable[ConsumerSpec],
    stop: asyncio.Event,
    every_s: float = 5.0,
) -> None:
    """Reads each consumer's state until ``stop``; a consumer not created yet (the
    subscriber starts after this loop) or a bus outage is skipped until the next turn."""
    specs = list(consumers)
    while not stop.is_set():
        for spec in specs:
            await _read(bus, health, spec)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)


async def _read(bus: Bus, health: Health, spec: ConsumerSpec) -> None:
    try:
        info = await bus.js.consumer_info(spec.stream, spec.durable, timeout=2.0)
    except _NOT_READ as exc:
        log.debug("consumer %s not read: %r", spec.durable, exc)
        return
    labels = (health.service, spec.durable)
    PENDING.labels(*labels).set(info.num_pending or 0)
    ACK_PENDING.labels(*labels).set(info.num_ack_pending or 0)
    REDELIVERED.labels(*labels).set(info.num_redelivered or 0)
    health.details[f"{spec.durable}_pending"] = int(info.num_pending or 0)
