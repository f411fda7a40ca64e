"""Projection lag at a sustained event rate, and rebuild speed, per store.

Starts embedded NATS (fsync always), Postgres (durable) and Valkey (append-only) in a
temporary folder and the persistence service in this process (its own chdb). A second
process publishes realistic runs (about 12 events each: message, acceptance, agents,
tool calls, a report) on many threads at a steady rate and records when each publish
was acknowledged. This process records when each projector's position passed each
sequence. Lag of an event in a store = applied (the batch holding it is in the store)
minus stored (the log acknowledged it). Then each store is rebuilt from the log into a
fresh set and swapped in, and the rebuild rate is events / seconds. The CPU this
process spent per event while the events were projected is reported too: what a linger
(``APEX_ANALYTICS_LINGER_S``, ``APEX_PROJECTION_LINGER_S``) saves or costs.

Run by hand: ``.venv/bin/python -m bench.projections [--rate 1000] [--seconds 30]``.
Never part of ``make test``.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson


def run_events(n: int) -> list[Any]:
    """One realistic run (12 events) of tenant/user/thread number ``n``."""
    from apex_contracts import (
        AgentCompleted,
        AgentCompletedData,
        AgentStarted,
        AgentStartedData,
        AgentThinking,
        AgentThinkingData,
        MessageCreated,
        MessageCreatedData,
        RunAccepted,
        RunAcceptedData,
        RunCompleted,
        RunCompletedData,
        RunUsage,
        Scope,
        ToolCompleted,
        ToolCompletedData,
        ToolExecuting,
        ToolExecutingData,
        derive_id,
        new_id,
    )
    from apex_contracts.report import AssistantResponse, Period, Report, SupervisorOutput

    s = Scope(
        tenant_id=derive_id("ten", str(n % 50)),
        user_id=derive_id("usr", str(n % 500)),
        thread_id=new_id("thr"),
        run_id=new_id("run"),
    )
    run, text = str(s.run_id), f"Where is my LLM spend going this month? (run {n})"
    msg = derive_id("msg", run, "user")
    events = [
        s.make(
            MessageCreated,
            MessageCreatedData(message_id=msg, content=text, client_msg_id=run),
            id=f"{run}:message",
        ),
        s.make(RunAccepted, RunAcceptedData(message_id=msg, question=text), id=f"{run}:accepted"),
        s.make(
            AgentStarted,
            AgentStartedData(agent="supervisor", step=0),
            id=f"{run}:0:started",
            agent="supervisor",
        ),
        s.make(
            AgentThinking,
            AgentThinkingData(agent="supervisor", step=0, text="Planning: triage, data, report."),
            id=f"{run}:0:thinking",
            agent="supervisor",
        ),
        s.make(
            AgentCompleted,
            AgentCompletedData(
                agent="supervisor",
                step=0,
                duration_ms=40,
                summary="planned",
                output=SupervisorOutput(plan=["reporting"]),
                tokens=300,
            ),
            id=f"{run}:0:completed",
            agent="supervisor",
        ),
    ]
    for c in range(3):
        call = derive_id("call", run, str(c))
        events += [
            s.make(
                ToolExecuting,
                ToolExecutingData(call_id=call, tool="cost_breakdown", arguments={"by": "model"}),
                id=f"{run}:{call}:exec",
            ),
            s.make(
                ToolCompleted,
                ToolCompletedData(
                    call_id=call,
                    tool="cost_breakdown",
                    status="ok",
                    duration_ms=35,
                    result={"rows": [{"model": "gpt-4o", "cost_usd": 12.5}] * 8},
                ),
                id=f"{run}:{call}:done",
            ),
        ]
    events.append(
        s.make(
            RunCompleted,
            RunCompletedData(
                status="completed",
                duration_ms=2400,
                usage=RunUsage(tool_calls=3, llm_tokens=900, llm_cost_usd=0.01),
                response=AssistantResponse(
                    text="## Where your spend goes\n" + "gpt-4o is 61% of the cost. " * 30,
                    report=Report(period=Period(), total_cost_usd=1234.5, requests=10_000),
                ),
            ),
            id=f"{run}:terminal",
        )
    )
    return events


# --- the publisher (its own process) -------------------------------------------------


async def publish(nats_url: str, rate: float, seconds: float, out: Path) -> None:
    """Publishes runs at ``rate`` events/s for ``seconds`` (each publish starts on time,
    up to 512 awaiting their acknowledgement); writes "seq ack_ns" lines."""
    from apex_runtime import Bus

    bus = await Bus.connect(nats_url, "bench-publisher")
    acks: list[tuple[int, int]] = []
    window = asyncio.Semaphore(512)

    async def one(event: Any) -> None:
        try:
            seq = await bus.publish_event(event)
            acks.append((seq, time.time_ns()))
        finally:
            window.release()

    interval = 1.0 / rate
    started = time.perf_counter()
    pending: set[asyncio.Task[None]] = set()
    n = sent = 0
    try:
        while time.perf_counter() - started < seconds:
            for event in run_events(n):
                delay = started + sent * interval - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                await window.acquire()
                task = asyncio.create_task(one(event))
                pending.add(task)
                task.add_done_callback(pending.discard)
                sent += 1
            n += 1
        await asyncio.gather(*pending)
    finally:
        await bus.close()
    elapsed = time.perf_counter() - started
    out.write_text("\n".join(f"{seq} {at}" for seq, at in acks))
    print(f"publisher: {sent} events in {elapsed:.1f} s ({sent / elapsed:.0f} events/s)", file=sys.stderr)


# --- the measuring process -----------------------------------------------------------


def servers(root: Path) -> list[Any]:
    from apex_cli.embedded import nats_server, valkey_server
    from apex_cli.embedded_postgres import postgres_server

    return [
        nats_server(root / "nats").start(),
        postgres_server(root / "postgres").start(),
        valkey_server(root / "redis").start(),
    ]


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    from apex_persistence.bootstrap import PersistenceService
    from apex_persistence.settings import PersistenceSettings

    root = Path(tempfile.mkdtemp(prefix="apex-bench-projections-"))
    nats, postgres, redis = servers(root)
    settings = PersistenceSettings(
        nats_url=nats.url,
        postgres_dsn=postgres.url,
        redis_url=redis.url,
        chdb_path=root / "chdb",
        persistence_port=0,
        log_level="WARNING",
        log_format="text",
        projection_batch=args.batch,
    )
    service = PersistenceService(settings)
    try:
        await service.start()
        seen: dict[str, list[tuple[int, int]]] = {
            r.store: [(0, 0)] for r in service.runners if r.store != "audit"
        }
        watching = asyncio.Event()
        watcher = asyncio.create_task(watch(service, seen, watching))
        acks_file = root / "acks.txt"
        cpu_started = time.process_time()
        publisher = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.projections",
            "--publish",
            nats.url,
            "--rate",
            str(args.rate),
            "--seconds",
            str(args.seconds),
            "--out",
            str(acks_file),
            cwd=Path(__file__).resolve().parents[1],
        )
        await publisher.wait()
        acks = [tuple(map(int, line.split())) for line in acks_file.read_text().splitlines() if line]
        head = max(seq for seq, _ in acks)
        await caught_up(service, seen, head)
        cpu_s = time.process_time() - cpu_started
        watching.set()
        await watcher
        results: dict[str, Any] = {
            "events": len(acks),
            "rate": args.rate,
            "seconds": args.seconds,
            "batch": args.batch,
            # this process: persistence (every projector) and the lag watcher
            "persistence_cpu_us_per_event": round(cpu_s / len(acks) * 1e6, 1),
            "lag_ms": {},
            "rebuild": {},
        }
        for store, points in seen.items():
            lags = lag_ms(acks, points)
            cuts = statistics.quantiles(lags, n=100, method="inclusive")
            results["lag_ms"][store] = {
                "p50": round(cuts[49], 1),
                "p99": round(cuts[98], 1),
                "max": round(max(lags), 1),
            }
        for store in ("postgres", "redis", "clickhouse"):
            report = await service_rebuilder(service).run(store)
            results["rebuild"][store] = {
                "events": report.events,
                "seconds": round(report.seconds, 2),
                "events_per_s": round(report.rate),
            }
        return results
    finally:
        await service.stop()
        for server in reversed([nats, postgres, redis]):
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


async def caught_up(service: Any, seen: dict[str, Any], head: int) -> None:
    while True:
        if all(r.position >= head for r in service.runners if r.store in seen):
            return
        await asyncio.sleep(0.05)


def service_rebuilder(service: Any) -> Any:
    from apex_persistence.rebuild.control import Rebuilder

    s = service.settings
    return Rebuilder(
        service.host.bus,
        service.stores.db,
        service.stores.redis,
        service.stores.analytics,
        retention=s.retention(),
        redis_keep=s.redis_recent_events,
        redis_ttl_s=s.redis_ttl_s,
        batch=s.rebuild_batch,
    )


async def watch(service: Any, seen: dict[str, list[tuple[int, int]]], done: asyncio.Event) -> None:
    """Records (position, time) whenever a projector's position moves (looked at every 2 ms)."""
    runners = [r for r in service.runners if r.store in seen]
    while not done.is_set():
        now = time.time_ns()
        for runner in runners:
            if runner.position > seen[runner.store][-1][0]:
                seen[runner.store].append((runner.position, now))
        await asyncio.sleep(0.002)


def lag_ms(acks: list[tuple[int, int]], points: list[tuple[int, int]]) -> list[float]:
    positions = [p for p, _ in points]
    lags = []
    for seq, acked in acks:
        applied = points[bisect.bisect_left(positions, seq)][1]
        lags.append(max(0.0, (applied - acked) / 1e6))
    return lags


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.projections")
    parser.add_argument("--rate", type=float, default=1000.0, help="events per second to sustain")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--batch", type=int, default=500, help="APEX_PROJECTION_BATCH")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--publish", metavar="NATS_URL", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.publish:
        asyncio.run(publish(args.publish, args.rate, args.seconds, args.out))
        return
    os.environ.setdefault("APEX_ENV", "test")
    results = asyncio.run(measure(args))
    print(
        f"{results['events']} events at {results['rate']:.0f} events/s for {results['seconds']:.0f} s "
        f"(batch {results['batch']}), {os.cpu_count()} CPUs"
    )
    print(f"persistence CPU {results['persistence_cpu_us_per_event']} µs per event (with the lag watcher)")
    print(f"{'store':<12}{'lag p50':>10}{'lag p99':>10}{'lag max':>10}{'rebuild':>16}")
    for store, lag in results["lag_ms"].items():
        rebuild = results["rebuild"][store]
        print(
            f"{store:<12}{lag['p50']:>8} ms{lag['p99']:>8} ms{lag['max']:>8} ms"
            f"{rebuild['events_per_s']:>10} ev/s"
        )
    if args.json:
        args.json.write_text(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
