"""What one run costs Apex: CPU of every process (NATS, Postgres and Valkey included) and
NATS operations, over a fixed batch of golden-path runs, charged per run; and where the
CPU goes (py-spy, per service) under the same load.

The batch is over when every run has reached its terminal event and the bus is drained
(the projections have stored every event), so the work a run sets off after its
terminal event is charged to it too. What the processes spend while idle is measured
just before and taken off."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from apex_cli.config import SERVICE_PORTS
from bench import cpu, natsops
from bench.common import summary
from bench.golden import one_run, open_ws
from bench.profile import profile
from tests.e2e.platform import Platform

SERVICES = tuple(SERVICE_PORTS)  # every Python service apex up runs


async def open_users(platform: Platform, users: int) -> list[Any]:
    """``users`` sockets (ten to an account), opened before anything is measured: signing
    up hashes a password, which is not a run's cost."""
    accounts = [platform.register() for _ in range(max(1, users // 10))]
    return list(await asyncio.gather(*(open_ws(platform, accounts[n % len(accounts)]) for n in range(users))))


async def fixed_batch(sockets: list[Any], runs: int) -> tuple[int, dict[str, Any]]:
    """``runs`` golden-path runs sent over ``sockets``, one user each, one run at a time."""
    tickets = iter(range(runs))
    latencies: list[float] = []

    async def user(ws: Any) -> None:
        for _ in tickets:
            latencies.append((await one_run(ws))["terminal_ms"])

    started = time.perf_counter()
    await asyncio.gather(*(user(ws) for ws in sockets))
    elapsed = time.perf_counter() - started
    return len(latencies), {
        "runs": len(latencies),
        "users": len(sockets),
        "runs_per_s": round(len(latencies) / elapsed, 2),
        "terminal_ms": summary(latencies),
    }


def ops_counter(platform: Platform) -> natsops.OpsCounter:
    ops_dir = platform.env.get("APEX_BENCH_OPS_DIR")
    monitor = natsops.monitor_url(platform.home / ".apex" / "nats" / "nats.conf")
    return natsops.OpsCounter(monitor, Path(ops_dir) if ops_dir else None)


async def per_run(platform: Platform, runs: int, users: int, idle_s: float = 3.0) -> dict[str, Any]:
    """CPU per process and NATS operations per run over a batch of ``runs`` runs."""
    ops = ops_counter(platform)
    sockets = await open_users(platform, users)
    await ops.drained()
    pids = cpu.platform_pids(platform.home)
    idle_ops_0 = await ops.snapshot()
    idle_started = time.monotonic()
    idle_rate = await cpu.idle_rate(pids, idle_s)
    idle_ops_1 = await ops.snapshot()
    idle_wall = time.monotonic() - idle_started
    cpu_before, started = cpu.snapshot(pids), time.monotonic()
    done, batch = await fixed_batch(sockets, runs)
    drained_s = await ops.drained()
    cpu_after, wall = cpu.snapshot(pids), time.monotonic() - started
    ops_after = await ops.snapshot()
    ops_wall = time.monotonic() - started
    for ws in sockets:
        await ws.close()
    counts = natsops.per_run(
        idle_ops_1, ops_after, max(1, done), ops_wall, (idle_ops_0, idle_ops_1, idle_wall)
    )
    charged = cpu.charge(cpu_before, cpu_after, idle_rate, wall, max(1, done))
    charged["drained_after_last_run_s"] = drained_s
    return {
        "batch": batch,
        "cpu": charged,
        "nats_ops": natsops.grouped(counts),
        "nats_ops_instrumented": ops.ops_dir is not None,
    }


async def where_cpu_goes(platform: Platform, seconds: float, users: int) -> dict[str, Any]:
    """py-spy profiles of every service while ``users`` users send runs for ``seconds``."""
    pids = {name: platform.pid(name) for name in SERVICES}
    sockets = await open_users(platform, users)

    async def load() -> dict[str, Any]:
        deadline = time.perf_counter() + seconds
        done = 0

        async def user(ws: Any) -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                await one_run(ws)
                done += 1

        await asyncio.gather(*(user(ws) for ws in sockets))
        return {"users": users, "runs": done}

    try:
        return await profile(pids, seconds, load)
    finally:
        for ws in sockets:
            await ws.close()
