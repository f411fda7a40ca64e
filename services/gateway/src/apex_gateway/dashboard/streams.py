"""Streams and durable consumers as JetStream reports them: how much each stream holds
and how far behind each worker pool (command consumers) is. The projectors follow the
log with ordered consumers; their lag is in persistence's heartbeat.

Only the durable consumers the contracts declare are asked for, one by one: APEX_EVT
also carries one ordered consumer per followed thread per gateway, and listing those
every two seconds would cost more than the figure is worth (their number is shown as
the stream's consumer count)."""

from __future__ import annotations

import logging
from typing import Any

import orjson

from apex_contracts import Unavailable
from apex_contracts import streams as specs
from apex_contracts.streams import STREAMS, ConsumerSpec
from apex_runtime import Bus

log = logging.getLogger(__name__)


def declared_consumers() -> list[ConsumerSpec]:
    """Every durable consumer in the contracts."""
    declared = [value for value in vars(specs).values() if isinstance(value, ConsumerSpec)]
    return sorted({c.durable: c for c in declared}.values(), key=lambda c: (c.stream, c.durable))


async def streams_view(bus: Bus) -> dict[str, Any]:
    """Each stream's size and replicas, each durable consumer's pending work. A stream or
    consumer that cannot be read is listed with its error, never dropped silently."""
    streams = [await _stream(bus, spec.name) for spec in STREAMS]
    consumers = [await _consumer(bus, spec) for spec in declared_consumers()]
    return {"streams": streams, "consumers": consumers}


async def _api(bus: Bus, subject: str) -> dict[str, Any]:
    """One JetStream API request over the port's ``request`` (the port has no stream or
    consumer info of its own; these figures are for the dashboard only)."""
    answer: dict[str, Any] = orjson.loads(await bus.request(subject, b"", timeout=2.0))
    return answer


async def _stream(bus: Bus, name: str) -> dict[str, Any]:
    try:
        info = await _api(bus, f"$JS.API.STREAM.INFO.{name}")
    except Unavailable as exc:
        return {"name": name, "error": _reason(exc)}
    if "error" in info:
        return {"name": name, "error": _reason(info["error"].get("description", "error"))}
    state, cluster = info.get("state", {}), info.get("cluster")
    return {
        "name": name,
        "messages": state.get("messages", 0),
        "bytes": state.get("bytes", 0),
        "first_seq": state.get("first_seq", 0),
        "last_seq": state.get("last_seq", 0),
        "consumers": state.get("consumer_count", 0),
        "replicas": info.get("config", {}).get("num_replicas") or 1,
        "leader": cluster.get("leader") if cluster else None,
        "current_replicas": sum(1 for r in cluster.get("replicas") or [] if r.get("current")) + 1
        if cluster
        else 1,
    }


async def _consumer(bus: Bus, spec: ConsumerSpec) -> dict[str, Any]:
    row: dict[str, Any] = {"stream": spec.stream, "name": spec.durable, "filter": spec.filter_subject}
    try:
        info = await _api(bus, f"$JS.API.CONSUMER.INFO.{spec.stream}.{spec.durable}")
    except Unavailable as exc:
        return {**row, "error": _reason(exc)}
    error = info.get("error")
    if error is not None:
        if error.get("code") == 404:
            return {**row, "error": "not created yet (its service has not started)"}
        return {**row, "error": _reason(error.get("description", "error"))}
    pending = info.get("num_pending") or 0
    unacked = info.get("num_ack_pending") or 0
    delivered, floor = info.get("delivered"), info.get("ack_floor")
    return {
        **row,
        "pending": pending,
        "ack_pending": unacked,
        "lag": pending + unacked,
        "redelivered": info.get("num_redelivered") or 0,
        "waiting": info.get("num_waiting") or 0,
        "delivered_seq": delivered.get("stream_seq") if delivered else None,
        "ack_floor_seq": floor.get("stream_seq") if floor else None,
    }


def _reason(exc: BaseException | str) -> str:
    log.warning("dashboard could not read JetStream: %r", exc)
    return f"unavailable ({type(exc).__name__})" if isinstance(exc, BaseException) else f"unavailable ({exc})"
