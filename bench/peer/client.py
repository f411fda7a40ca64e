"""Measures the LangGraph local server like bench.golden measures Apex. Runs with the peer's
own virtual environment (langgraph-sdk); prints one JSON document.

Usage: python client.py <url> <sequential-runs> <concurrency,...> <seconds> <drop-trials>"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from typing import Any

from langgraph_sdk import get_client

TERMINAL_AGENT = "reporting"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = (len(ordered) - 1) * q
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def summary(values: list[float]) -> dict[str, Any]:
    return {
        "n": len(values),
        "p50": round(pct(values, 0.5), 1),
        "p95": round(pct(values, 0.95), 1),
        "p99": round(pct(values, 0.99), 1),
    }


async def one_run(client: Any, thread_id: str) -> dict[str, float]:
    started = time.perf_counter()
    first = None
    async for part in client.runs.stream(thread_id, "analyst", input={"question": "q"}, stream_mode="custom"):
        if part.event == "custom":
            first = first or time.perf_counter()
    end = time.perf_counter()
    return {"first_event_ms": ((first or end) - started) * 1000, "terminal_ms": (end - started) * 1000}


async def sequential(client: Any, runs: int) -> dict[str, Any]:
    thread = await client.threads.create()
    for _ in range(2):
        await one_run(client, thread["thread_id"])
    results = [await one_run(client, thread["thread_id"]) for _ in range(runs)]
    return {k: summary([r[k] for r in results]) for k in ("first_event_ms", "terminal_ms")}


async def concurrent(client: Any, users: int, seconds: float) -> dict[str, Any]:
    threads = [(await client.threads.create())["thread_id"] for _ in range(users)]
    latencies: list[dict[str, float]] = []
    deadline = time.perf_counter() + seconds

    async def loop(thread_id: str) -> None:
        while time.perf_counter() < deadline:
            latencies.append(await one_run(client, thread_id))

    started = time.perf_counter()
    await asyncio.gather(*(loop(t) for t in threads))
    elapsed = time.perf_counter() - started
    return {
        "users": users,
        "runs": len(latencies),
        "runs_per_s": round(len(latencies) / elapsed, 2),
        "first_event_ms": summary([r["first_event_ms"] for r in latencies]),
        "terminal_ms": summary([r["terminal_ms"] for r in latencies]),
    }


async def drop_trials(client: Any, trials: int) -> dict[str, Any]:
    """Drop the stream after a random number of events, rejoin with the last event id, and
    compare what was received with the events the run emitted (15 per run)."""
    rng = random.Random(7)
    lost = duplicated = bad = 0
    for _ in range(trials):
        thread = await client.threads.create()
        cut = rng.randint(1, 14)
        seen: list[str] = []
        last_id = None
        run_id = None
        async for part in client.runs.stream(
            thread["thread_id"],
            "analyst",
            input={"question": "q"},
            stream_mode="custom",
            stream_resumable=True,
        ):
            if part.event == "metadata":
                run_id = part.data.get("run_id")
            if part.event == "custom":
                seen.append(f"{part.data['agent']}:{part.data['type']}:{len(seen)}")
                last_id = part.id
                if len(seen) >= cut:
                    break
        got = (
            [
                p
                async for p in client.runs.join_stream(
                    thread["thread_id"], run_id, last_event_id=last_id, stream_mode="custom"
                )
            ]
            if run_id
            else []
        )
        total = len(seen) + len([p for p in got if p.event == "custom"])
        trial_lost = max(0, 15 - total)
        trial_dup = max(0, total - 15)
        lost += trial_lost
        duplicated += trial_dup
        bad += bool(trial_lost or trial_dup)
    return {
        "trials": trials,
        "events_lost": lost,
        "events_duplicated": duplicated,
        "trials_with_loss_or_dup": bad,
    }


async def main() -> None:
    url, runs, levels, seconds, trials = (
        sys.argv[1],
        int(sys.argv[2]),
        sys.argv[3],
        float(sys.argv[4]),
        int(sys.argv[5]),
    )
    client = get_client(url=url, timeout=120)
    out: dict[str, Any] = {"sequential": await sequential(client, runs)}
    out["concurrent"] = [
        await concurrent(client, int(level), seconds) for level in levels.split(",") if level
    ]
    out["dropped_connection"] = await drop_trials(client, trials)
    print(json.dumps(out))


asyncio.run(main())
