"""``python -m apex_persistence projections status``: each projector's position and lag.

Two sources: the running service's heartbeat (which replica projects each store, its
checkpoint and lag, breaker, rebuild; the embedded ClickHouse can be opened by the service
process only, so the service is the one to ask) and JetStream itself (the head of the
stream each store is projected from), which answers even when no instance runs."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final

from pydantic import ValidationError

from apex_contracts import Heartbeat
from apex_contracts.streams import PROJECTED, STREAMS
from apex_persistence.settings import PersistenceSettings
from apex_runtime import Bus, Notice
from apex_runtime.port import stream_holding

STORES: Final = ("postgres", "redis", "clickhouse", "audit")
Heads = dict[str, int]


def status_lines(beat: Heartbeat | None, heads: Heads, only: str | None = None) -> list[str]:
    """A table: store, projector (active here, standby), checkpoint, head (the stream's
    last sequence), lag (events not applied yet), breaker, rebuild."""
    lines = [
        f"{'store':<12}{'projector':<11}{'checkpoint':>12}{'head':>10}{'lag':>8}  {'breaker':<10}rebuild"
    ]
    details = beat.details if beat else {}
    for store in STORES:
        if only is not None and store != only:
            continue
        breaker = beat.breakers.get("postgres" if store == "audit" else store, "closed") if beat else "?"
        lines.append(
            f"{store:<12}{details.get(f'projector_{store}', '?')!s:<11}"
            f"{details.get(f'checkpoint_{store}', '?')!s:>12}{heads.get(store, '?')!s:>10}"
            f"{details.get(f'lag_{store}', '?')!s:>8}  {breaker:<10}{details.get(f'rebuild_{store}', '-')}"
        )
    return lines


async def stream_heads(bus: Bus) -> Heads:
    """The last sequence of the stream each store is projected from, from JetStream."""
    out: Heads = {}
    for store in STORES:
        out[store] = await bus.head_seq(stream_holding(STREAMS, PROJECTED[store]) or "")
    return out


async def projections_status(
    settings: PersistenceSettings, store: str | None = None, wait_s: float = 6.0
) -> int:
    """Prints the table; 1 when no persistence instance answers (the stream heads are
    printed anyway)."""
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
        heads = await stream_heads(bus)
    finally:
        await bus.close()
    if beat is not None:
        print(f"persistence {beat.instance} ({beat.status})")  # noqa: T201
    for line in status_lines(beat, heads, store):
        print(line)  # noqa: T201
    return 0 if beat is not None else 1
