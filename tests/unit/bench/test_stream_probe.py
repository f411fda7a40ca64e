"""The streaming bench's split of a delta's delay and its CPU over the streaming window."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import orjson

from bench.stream_probe import CpuSampler, LogProbe


def test_cpu_over_the_window_uses_the_samples_inside_it() -> None:
    sampler = CpuSampler({})
    sampler.samples = [
        (10.0, {"nats": 0.0, "agents": 0.0}),
        (11.0, {"nats": 0.5, "agents": 0.2}),  # first inside
        (13.0, {"nats": 1.5, "agents": 1.2}),  # last inside
        (14.0, {"nats": 9.0, "agents": 9.0}),
    ]
    out = sampler.window(10.5, 13.5, cores=2)
    assert out == {
        "seconds": 2.0,
        "core_pct_by_process": {"nats": 50.0, "agents": 50.0},
        "platform_busy_pct": 50.0,
        "machine_busy_pct": None,
    }
    assert sampler.window(11.5, 12.5, cores=2) is None, "one sample is no interval"


def test_the_whole_machine_is_counted_apart_from_the_platform() -> None:
    sampler = CpuSampler({})
    sampler.samples = [(1.0, {"nats": 0.0, "(machine)": 0.0}), (2.0, {"nats": 0.4, "(machine)": 1.6})]
    out = sampler.window(0.0, 3.0, cores=2)
    assert out is not None
    assert out["core_pct_by_process"] == {"nats": 40.0}
    assert (out["platform_busy_pct"], out["machine_busy_pct"]) == (20.0, 80.0)


def test_only_deltas_are_timed_from_the_moment_they_were_written() -> None:
    into: list[float] = []
    record = LogProbe._recorder(into)
    written = time.time() - 0.05
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(written)) + f".{int(written % 1 * 1e6):06d}+00:00"
    for kind in ("message.delta", "agent_started"):
        data = orjson.dumps({"type": kind, "occurred_at": stamp})
        asyncio.run(record(SimpleNamespace(data=data)))  # type: ignore[arg-type]
    assert len(into) == 1 and 40 <= into[0] <= 5000
