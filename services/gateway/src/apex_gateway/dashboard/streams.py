"""Streams and durable consumers as JetStream reports them: how much each stream holds
and how far behind each worker pool (command consumers) and projector is.

Only the durable consumers the contracts declare are asked for, one by one: APEX_EVT
also carries one ordered consumer per open WebSocket subscription, and listing those
every two seconds would cost more than the figure is worth (their number is shown as
the stream's consumer count)."""

from __future__ import annotations

import logging
from typing import Any

import nats.errors
import nats.js.errors

from apex_contracts import streams as specs
from apex_contracts.streams import STREAMS, ConsumerSpec, projector_consumer
from apex_runtime import Bus

log = logging.getLogger(__name__)
PROJECTED_STORES = ("postgres", "redis", "clickhouse")
_BUS_ERRORS = (nats.errors.Error, nats.js.errors.Error, TimeoutError)


def declared_consumers() -> list[ConsumerSpec]:
    """Every durable consumer in the contracts, the projectors' included."""
    declared = [value for value in vars(specs).values() if isinstance(value, ConsumerSpec)]
    declared += [projector_consumer(store) for store in PROJECTED_STORES]
    return sorted({c.durable: c for c in declared}.values(), key=lambda c: (c.stream, c.durable))


async def streams_view(bus: Bus) -> dict[str, Any]:
    """Each stream's size and replicas, each durable consumer's pending work. A stream or
    consumer that cannot be read is listed with its error, never dropped silently."""
    streams = [await _stream(bus, spec.name) for spec in STREAMS]
    consumers = [await _consumer(bus, spec) for spec in declared_consumers()]
    return {"streams": streams, "consumers": consumers}


async def _stream(bus: Bus, name: str) -> dict[str, Any]:
    try:
        info = await bus.js.stream_info(name)
    except _BUS_ERRORS as exc:
        return {"name": name, "error": _reason(exc)}
    cluster = info.cluster
    return {
        "name": name,
        "messages": info.state.messages,
        "bytes": info.state.bytes,
        "first_seq": info.state.first_seq,
        "last_seq": info.state.last_seq,
        "consumers": info.state.consumer_count,
        "replicas": info.config.num_replicas or 1,
        "leader": cluster.leader if cluster else None,
        "current_replicas": sum(1 for r in (cluster.replicas or []) if r.current) + 1 if cluster else 1,
    }


async def _consumer(bus: Bus, spec: ConsumerSpec) -> dict[str, Any]:
    row: dict[str, Any] = {"stream": spec.stream, "name": spec.durable, "filter": spec.filter_subject}
    try:
        info = await bus.js.consumer_info(spec.stream, spec.durable)
    except nats.js.errors.NotFoundError:
        return {**row, "error": "not created yet (its service has not started)"}
    except _BUS_ERRORS as exc:
        return {**row, "error": _reason(exc)}
    pending = info.num_pending or 0
    unacked = info.num_ack_pending or 0
    return {
        **row,
        "pending": pending,
        "ack_pending": unacked,
        "lag": pending + unacked,
        "redelivered": info.num_redelivered or 0,
        "waiting": info.num_waiting or 0,
        "delivered_seq": info.delivered.stream_seq if info.delivered else None,
        "ack_floor_seq": info.ack_floor.stream_seq if info.ack_floor else None,
    }


def _reason(exc: BaseException) -> str:
    log.warning("dashboard could not read JetStream: %r", exc)
    return f"unavailable ({type(exc).__name__})"
