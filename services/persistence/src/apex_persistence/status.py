"""``python -m apex_persistence projections status``: each projector's position and lag.

Two sources: the running service's heartbeat (checkpoint, lag, breaker, rebuild; the
embedded ClickHouse can be opened by the service process only, so the service is the one
to ask) and JetStream itself (each durable consumer's acknowledged position and the
events still pending), which answers even when no instance runs."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final

from pydantic import ValidationError

from apex_contracts import Heartbeat
from apex_contracts.streams import AUDIT_CONSUMER, projector_consumer
from apex_persistence.settings import PersistenceSettings
from apex_runtime import Bus, Notice

STORES: Final = ("postgres", "redis", "clickhouse", "audit")
Consumed = dict[str, tuple[int, int]]


def status_lines(beat: Heartbeat | None, consumed: Consumed, only: str | None = None) -> list[str]:
    """A table: store, checkpoint, acked (consumer's ack floor), pending (not yet acked),
    lag (stream head minus checkpoint), breaker, rebuild."""
    lines = [f"{'store':<12}{'checkpoint':>12}{'acked':>10}{'pending':>9}{'lag':>8}  {'breaker':<10}rebuild"]
    details = beat.details if beat else {}
    for store in STORES:
        if only is not None and store != only:
            continue
        breaker = beat.breakers.get("postgres" if store == "audit" else store, "closed") if beat else "?"
        acked, pending = consumed.get(store, ("?", "?"))
        lines.append(
            f"{store:<12}{details.get(f'checkpoint_{store}', '?')!s:>12}{acked!s:>10}{pending!s:>9}"
            f"{details.get(f'lag_{store}', '?')!s:>8}  {breaker:<10}{details.get(f'rebuild_{store}', '-')}"
        )
    return lines


async def consumer_positions(bus: Bus) -> Consumed:
    """(ack floor, pending) of each projector's durable consumer, from JetStream."""
    out: Consumed = {}
    specs = {store: projector_consumer(store) for store in STORES[:3]} | {"audit": AUDIT_CONSUMER}
    for store, spec in specs.items():
        state = await bus.consumer_state(spec.stream, spec.durable)
        if state is not None:
            out[store] = (state.acked_through, state.pending + state.ack_pending)
    return out


async def projections_status(
    settings: PersistenceSettings, store: str | None = None, wait_s: float = 6.0
) -> int:
    """Prints the table; 1 when no persistence instance answers (the JetStream figures
    are printed anyway)."""
    bus = await Bus.connect(settings.nats_url, "persistence-status", **settings.nats_options())
    beats: asyncio.Queue[Heartbeat] = asyncio.Queue()

    async def on_beat(notice: Notice) -> None:
        with contextlib.suppress(ValidationError):
            beats.put_nowait(Heartbeat.model_validate_json(notice.data))

    beat: Heartbeat | None = None
    try:
        sub = await bus.listen("apex.health.persistence.*", on_beat)
        try:
            beat = await asyncio.wait_for(beats.get(), wait_s)
        except TimeoutError:
            print(f"no persistence instance answered on {settings.nats_url} within {wait_s:.0f}s")  # noqa: T201
        finally:
            await sub.stop()
        consumed = await consumer_positions(bus)
    finally:
        await bus.close()
    if beat is not None:
        print(f"persistence {beat.instance} ({beat.status})")  # noqa: T201
    for line in status_lines(beat, consumed, store):
        print(line)  # noqa: T201
    return 0 if beat is not None else 1
