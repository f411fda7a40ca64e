"""``python -m apex_persistence projections status``: each projector's checkpoint and lag,
as the running service reports them in its heartbeat (the embedded ClickHouse can be
opened by the service process only, so the service is the one to ask)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final

from pydantic import ValidationError

from apex_contracts import Heartbeat
from apex_persistence.settings import PersistenceSettings
from apex_runtime import Bus

STORES: Final = ("postgres", "redis", "clickhouse", "audit")


def status_lines(beat: Heartbeat, only: str | None = None) -> list[str]:
    lines = [f"{'store':<12}{'checkpoint':>12}{'lag':>10}  breaker"]
    for store in STORES:
        if only is not None and store != only:
            continue
        breaker = beat.breakers.get("postgres" if store == "audit" else store, "closed")
        checkpoint = beat.details.get(f"checkpoint_{store}", "?")
        lag = beat.details.get(f"lag_{store}", "?")
        lines.append(f"{store:<12}{checkpoint!s:>12}{lag!s:>10}  {breaker}")
    return lines


async def projections_status(settings: PersistenceSettings, store: str | None = None,
                             wait_s: float = 6.0) -> int:
    """Prints the first heartbeat of a persistence instance; 1 when none answers."""
    bus = await Bus.connect(settings.nats_url, "persistence-status")
    beats: asyncio.Queue[Heartbeat] = asyncio.Queue()

    async def on_beat(msg: object) -> None:
        with contextlib.suppress(ValidationError):
            beats.put_nowait(Heartbeat.model_validate_json(getattr(msg, "data", b"")))

    try:
        sub = await bus.nc.subscribe("apex.health.persistence.*", cb=on_beat)
        try:
            beat = await asyncio.wait_for(beats.get(), wait_s)
        except TimeoutError:
            print(f"no persistence instance answered on {settings.nats_url} within {wait_s:.0f}s")  # noqa: T201
            return 1
        finally:
            await sub.unsubscribe()
    finally:
        await bus.close()
    print(f"persistence {beat.instance} ({beat.status})")  # noqa: T201
    for line in status_lines(beat, store):
        print(line)  # noqa: T201
    return 0
