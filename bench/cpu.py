"""CPU time of the processes of a system under test, one figure per process, so that a
fixed batch of work can be charged per run.

A process is counted with its descendants: Postgres serves each connection from its own
backend process, and a backend that exits leaves its time in its parent's
``children_*`` times, so nothing a batch caused is missed. The time the processes spend
while nothing runs (heartbeats, polls) is measured first and taken off, so that what is
charged to the runs is what the runs cost."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import psutil

Pids = Mapping[str, int]


def tree_cpu_s(pid: int) -> float:
    """User plus system seconds of ``pid`` and every descendant, the exited ones included
    (0 when the process is gone)."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0.0
    for proc in processes:
        try:
            t = proc.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def snapshot(pids: Pids) -> dict[str, float]:
    return {name: tree_cpu_s(pid) for name, pid in pids.items()}


def platform_pids(home: Path) -> dict[str, int]:
    """Every process ``apex up`` started in ``home`` (services and embedded servers), by name."""
    out = {}
    for pid_file in sorted((home / ".apex" / "run").glob("*.pid")):
        try:
            out[pid_file.stem] = int(pid_file.read_text())
        except (OSError, ValueError):
            continue
    return out


async def idle_rate(pids: Pids, seconds: float = 3.0) -> dict[str, float]:
    """CPU seconds per second each process spends while no work is sent to it."""
    before, started = snapshot(pids), time.monotonic()
    await asyncio.sleep(seconds)
    after, wall = snapshot(pids), time.monotonic() - started
    return {name: max(0.0, (after[name] - before[name]) / wall) for name in pids}


def charge(
    before: Mapping[str, float],
    after: Mapping[str, float],
    idle: Mapping[str, float],
    wall_s: float,
    runs: int,
) -> dict[str, Any]:
    """Milliseconds of CPU per run, per process and in total: ``raw`` is everything the
    process spent during the batch, ``net`` the same less its idle rate over the batch."""
    per: dict[str, dict[str, float]] = {}
    for name in before:
        spent = max(0.0, after.get(name, before[name]) - before[name])
        net = max(0.0, spent - idle.get(name, 0.0) * wall_s)
        per[name] = {
            "raw_ms_per_run": round(spent / runs * 1000, 2),
            "net_ms_per_run": round(net / runs * 1000, 2),
            "idle_ms_per_s": round(idle.get(name, 0.0) * 1000, 2),
        }
    return {
        "runs": runs,
        "wall_s": round(wall_s, 2),
        "per_process": per,
        "total_raw_ms_per_run": round(sum(p["raw_ms_per_run"] for p in per.values()), 1),
        "total_net_ms_per_run": round(sum(p["net_ms_per_run"] for p in per.values()), 1),
    }


async def measure(
    pids: Pids, work: Callable[[], Any], settle: Callable[[], Any] | None = None, idle_s: float = 3.0
) -> tuple[Any, dict[str, Any]]:
    """Runs ``work()`` (a coroutine function returning ``(runs, result)``), then
    ``settle()`` (waits until the system has finished what the runs set off), and charges
    the CPU spent over both to the runs."""
    idle = await idle_rate(pids, idle_s)
    before, started = snapshot(pids), time.monotonic()
    runs, result = await work()
    if settle is not None:
        await settle()
    after, wall = snapshot(pids), time.monotonic() - started
    return result, charge(before, after, idle, wall, max(1, runs))
