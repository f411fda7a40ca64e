"""Where a streamed delta's time goes, measured beside the streaming bench: when the bus
hears each ``message.delta`` (a core subscription: as published, before JetStream stores
it) and when an ordered consumer gets it (after the store and its fsync), against the
moment the agent wrote the event; and each process's CPU over the streaming window, so a
reader can tell a busy machine from a slow store."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

import nats
import orjson
import psutil
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy

from bench.common import summary
from bench.cpu import Pids, snapshot
from tests.e2e.platform import Platform

EVENTS = "apex.evt.>"
MACHINE = "(machine)"


class LogProbe:
    """Delays of every ``message.delta`` from its ``occurred_at``, in ms: ``heard`` on a
    core subscription, ``delivered`` by an ordered JetStream consumer."""

    def __init__(self, platform: Platform) -> None:
        self._platform = platform
        self.heard: list[float] = []
        self.delivered: list[float] = []
        self._nc: Any = None

    async def __aenter__(self) -> LogProbe:
        env = self._platform.recorded_env()
        self._nc = await nats.connect(env["APEX_NATS_URL"].split(","), **self._platform.nats_options())
        await self._nc.subscribe(EVENTS, cb=self._recorder(self.heard))
        await self._nc.jetstream().subscribe(
            EVENTS, cb=self._recorder(self.delivered), ordered_consumer=True, deliver_policy=DeliverPolicy.NEW
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._nc.close()

    @staticmethod
    def _recorder(into: list[float]) -> Any:
        async def record(msg: Msg) -> None:
            now = time.time()
            if b'"message.delta"' not in msg.data:
                return
            event = orjson.loads(msg.data)
            if event.get("type") == "message.delta":
                into.append((now - datetime.fromisoformat(event["occurred_at"]).timestamp()) * 1000)

        return record

    def figures(self) -> dict[str, Any]:
        return {
            "written_to_bus_ms": summary(self.heard) if self.heard else None,
            "written_to_consumer_ms": summary(self.delivered) if self.delivered else None,
        }


class CpuSampler:
    """Each process's CPU seconds, sampled every ``every_s`` (wall clock, epoch seconds)."""

    def __init__(self, pids: Pids, every_s: float = 0.25) -> None:
        self._pids = pids
        self._every_s = every_s
        self.samples: list[tuple[float, dict[str, float]]] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> CpuSampler:
        self._task = asyncio.ensure_future(self._sample())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _sample(self) -> None:
        while True:
            per = await asyncio.to_thread(snapshot, self._pids)
            self.samples.append((time.time(), {**per, MACHINE: _machine_busy_s()}))
            await asyncio.sleep(self._every_s)

    def window(self, start: float, end: float, cores: int) -> dict[str, Any] | None:
        """Each process's share of one core over [start, end] (the samples nearest inside),
        the platform's busy share (its processes over ``cores``) and the whole machine's
        (the bench's clients and model server included)."""
        inside = [s for s in self.samples if start <= s[0] <= end]
        if len(inside) < 2:
            return None
        (t0, first), (t1, last) = inside[0], inside[-1]
        per = {k: round((last[k] - first.get(k, 0.0)) / (t1 - t0) * 100, 1) for k in last}
        machine = per.pop(MACHINE, None)
        per = dict(sorted(per.items(), key=lambda kv: -kv[1]))
        return {
            "seconds": round(t1 - t0, 2),
            "core_pct_by_process": per,
            "platform_busy_pct": round(sum(per.values()) / cores, 1),
            "machine_busy_pct": None if machine is None else round(machine / cores, 1),
        }


def _machine_busy_s() -> float:
    """CPU seconds the whole machine spent busy (every process, the bench's own included)."""
    t = psutil.cpu_times()
    return float(sum(t) - t.idle - getattr(t, "iowait", 0.0))
