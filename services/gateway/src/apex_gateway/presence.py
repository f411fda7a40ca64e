"""Which services are alive: the latest heartbeat of every instance on the bus."""

from __future__ import annotations

import time
from typing import Any

from pydantic import ValidationError

from apex_contracts import Heartbeat, subjects
from apex_contracts.health import HEARTBEAT_STALE_S, SERVICES
from apex_runtime import Bus, Notice

# The services a run needs to make progress (persistence only serves reads and views).
RUN_WORKERS = ("orchestrator", "agents", "tools")


class ServiceDirectory:
    def __init__(self) -> None:
        self._beats: dict[tuple[str, str], tuple[float, Heartbeat]] = {}
        self._sub: Any = None
        self._started = time.monotonic()

    async def start(self, bus: Bus) -> None:
        async def on_beat(msg: Notice) -> None:
            try:
                beat = Heartbeat.model_validate_json(msg.data)
            except ValidationError:
                return
            self._beats[(beat.service, beat.instance)] = (time.monotonic(), beat)

        self._sub = await bus.listen(subjects.HEALTH_ALL, on_beat)

    def instances(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        return [
            {
                **beat.model_dump(mode="json"),
                "age_s": round(now - seen, 1),
                "alive": now - seen < HEARTBEAT_STALE_S,
            }
            for seen, beat in sorted(self._beats.values(), key=lambda x: (x[1].service, x[1].instance))
        ]

    def absent(self, required: tuple[str, ...] = RUN_WORKERS) -> list[str]:
        """Like ``missing``, but empty until this directory has listened for one
        heartbeat staleness period: right after start, silence means nothing yet."""
        if time.monotonic() - self._started < HEARTBEAT_STALE_S:
            return []
        return self.missing(required)

    def missing(self, required: tuple[str, ...] = SERVICES) -> list[str]:
        now = time.monotonic()
        alive = {
            beat.service
            for seen, beat in self._beats.values()
            if now - seen < HEARTBEAT_STALE_S and beat.ready
        }
        return [s for s in required if s not in alive]
