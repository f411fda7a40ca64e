"""Shared pieces of the benchmark suite: statistics, machine facts, a running platform."""

from __future__ import annotations

import importlib.metadata
import os
import platform as host
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil

from tests.e2e.platform import Platform, platform_env


def percentile(values: list[float], q: float) -> float:
    """Inclusive linear percentile (like numpy's default)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summary(values: list[float], digits: int = 1) -> dict[str, Any]:
    return {
        "n": len(values),
        "p50": round(percentile(values, 0.5), digits),
        "p95": round(percentile(values, 0.95), digits),
        "p99": round(percentile(values, 0.99), digits),
        "min": round(min(values), digits) if values else None,
        "max": round(max(values), digits) if values else None,
    }


def repeated(values: list[float], digits: int = 1) -> dict[str, Any]:
    """A figure measured several times: its median and spread."""
    return {
        "median": round(statistics.median(values), digits),
        "spread": [round(min(values), digits), round(max(values), digits)],
        "runs": [round(v, digits) for v in values],
    }


def machine() -> dict[str, Any]:
    load = os.getloadavg()
    return {
        "cores": psutil.cpu_count(logical=True),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "load_avg_1_5_15": [round(x, 2) for x in load],
        "python": host.python_version(),
        "system": f"{host.system()} {host.release()} {host.machine()}",
    }


def versions(*packages: str) -> dict[str, str]:
    out = {}
    for name in packages:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


@contextmanager
def running_platform(count_ops: bool = False, **overrides: str) -> Iterator[Platform]:
    """``apex up`` in a temporary folder on free ports; with ``count_ops`` every service
    counts its NATS messages (bench/instrument/sitecustomize.py, bench.natsops)."""
    home = Path(tempfile.mkdtemp(prefix="apex-bench-"))
    home.chmod(0o755)
    env = platform_env(home)
    env.update({"APEX_LOG_LEVEL": "WARNING", **overrides})
    if count_ops:
        ops_dir = home / "nats-ops"
        ops_dir.mkdir()
        env["APEX_BENCH_OPS_DIR"] = str(ops_dir)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(Path(__file__).resolve().parent / "instrument"), env.get("PYTHONPATH")) if p
        )
    platform = Platform(home, env)
    platform.ready_after_s = platform.start(timeout=300)  # type: ignore[attr-defined]
    try:
        yield platform
    finally:
        platform.stop()


class Stopwatch:
    def __init__(self) -> None:
        self.started = time.perf_counter()

    def ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000
