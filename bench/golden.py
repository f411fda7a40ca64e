"""Apex's golden path with the offline planner, measured at the client: from
`message.send` to the first event frame, to `run.accepted`, and to the terminal event;
sequential and with many concurrent users; runs per second; CPU per run."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect

from apex_contracts import TERMINAL
from bench import cpu
from bench.common import repeated, summary
from tests.e2e.platform import Platform, User

QUESTION = "Where is my LLM spend going and how do I cut it?"


async def open_ws(platform: Platform, user: User) -> ClientConnection:
    ws = await connect(
        platform.ws_url,
        subprotocols=["apex.v1"],  # type: ignore[list-item]
        additional_headers={"Authorization": f"Bearer {user.access_token}"},
        open_timeout=120,
        ping_interval=None,
        max_size=2**24,
    )
    await ws.recv()
    return ws


async def one_run(ws: ClientConnection) -> dict[str, float]:
    started = time.perf_counter()
    await ws.send(
        orjson.dumps({"type": "message.send", "client_msg_id": uuid.uuid4().hex, "text": QUESTION}).decode()
    )
    first = accepted = None
    run_id = None
    while True:
        frame = orjson.loads(await ws.recv())
        now = time.perf_counter()
        if frame["type"] == "message.accepted":
            run_id = frame["run_id"]
        elif frame["type"] == "event":
            event = frame["event"]
            if event.get("run_id") != run_id and run_id is not None:
                continue
            first = first or now
            if event["type"] == "run.accepted":
                accepted = now
            if event["type"] in TERMINAL:
                # one cumulative ack per run, as the page coalesces its acks: an unacked
                # event would be sent again after the ack timeout
                await ws.send(
                    orjson.dumps(
                        {"type": "event.ack", "thread_id": frame["thread_id"], "seq": frame["seq"]}
                    ).decode()
                )
                return {
                    "first_event_ms": (first - started) * 1000,
                    "run_accepted_ms": ((accepted or now) - started) * 1000,
                    "terminal_ms": (now - started) * 1000,
                }


async def sequential(platform: Platform, runs: int = 20, repeats: int = 3) -> dict[str, Any]:
    user = platform.register()
    rounds = []
    for _ in range(repeats):
        ws = await open_ws(platform, user)
        for _warm in range(2):
            await one_run(ws)
        results = [await one_run(ws) for _ in range(runs)]
        await ws.close()
        rounds.append(results)
    return {
        key: {
            "p50": repeated([summary([r[key] for r in results])["p50"] for results in rounds]),
            "p95": repeated([summary([r[key] for r in results])["p95"] for results in rounds]),
            "p99": repeated([summary([r[key] for r in results])["p99"] for results in rounds]),
        }
        for key in ("first_event_ms", "run_accepted_ms", "terminal_ms")
    } | {"runs_per_repeat": runs, "repeats": repeats}


async def concurrent(platform: Platform, users: int, seconds: float = 20.0) -> dict[str, Any]:
    accounts = [platform.register() for _ in range(max(1, users // 10))]
    sockets = await asyncio.gather(*(open_ws(platform, accounts[n % len(accounts)]) for n in range(users)))
    latencies: list[dict[str, float]] = []
    deadline = time.perf_counter() + seconds
    pids = cpu.platform_pids(platform.home)
    cpu_before = sum(cpu.snapshot(pids).values())

    async def user_loop(ws: ClientConnection) -> None:
        while time.perf_counter() < deadline:
            latencies.append(await one_run(ws))

    started = time.perf_counter()
    await asyncio.gather(*(user_loop(ws) for ws in sockets))
    elapsed = time.perf_counter() - started
    spent = sum(cpu.snapshot(pids).values()) - cpu_before
    for ws in sockets:
        await ws.close()
    return {
        "users": users,
        "runs": len(latencies),
        "runs_per_s": round(len(latencies) / elapsed, 2),
        # everything the platform spent during the load (idle included, projections lagging
        # behind not waited for): the fixed batch in bench.cost is the per-run figure
        "cpu_ms_per_run": round(spent / max(1, len(latencies)) * 1000, 1),
        "first_event_ms": summary([r["first_event_ms"] for r in latencies]),
        "terminal_ms": summary([r["terminal_ms"] for r in latencies]),
    }


async def dropped_connection_trials(platform: Platform, trials: int = 100) -> dict[str, Any]:
    """Drop the socket at a random point of a run, resume after the last seq seen: count
    events lost or duplicated against a full replay of the thread."""
    import random

    rng = random.Random(7)
    user = platform.register()
    lost = duplicated = bad_trials = 0
    for _ in range(trials):
        ws = await open_ws(platform, user)
        await ws.send(
            orjson.dumps(
                {"type": "message.send", "client_msg_id": uuid.uuid4().hex, "text": QUESTION}
            ).decode()
        )
        cut = rng.randint(1, 15)
        seen: list[int] = []
        thread_id = run_id = None
        while len(seen) < cut:
            frame = orjson.loads(await ws.recv())
            if frame["type"] == "message.accepted":
                thread_id, run_id = frame["thread_id"], frame["run_id"]
            elif frame["type"] == "event":
                seen.append(frame["seq"])
                if frame["event"]["type"] in TERMINAL:
                    break
        ws.transport.abort()
        ws = await open_ws(platform, user)
        await ws.send(
            orjson.dumps({"type": "thread.subscribe", "thread_id": thread_id, "after_seq": seen[-1]}).decode()
        )
        while True:
            frame = orjson.loads(await ws.recv())
            if frame["type"] == "event":
                seen.append(frame["seq"])
                if frame["event"]["type"] in TERMINAL and frame["event"]["run_id"] == run_id:
                    break
        await ws.close()
        ws = await open_ws(platform, user)
        await ws.send(
            orjson.dumps({"type": "thread.subscribe", "thread_id": thread_id, "after_seq": 0}).decode()
        )
        head = orjson.loads(await ws.recv())["head_seq"]
        full: list[int] = []
        while not full or full[-1] < head:
            frame = orjson.loads(await ws.recv())
            if frame["type"] == "event":
                full.append(frame["seq"])
        await ws.close()
        trial_lost = len(set(full) - set(seen))
        trial_dup = len(seen) - len(set(seen))
        lost += trial_lost
        duplicated += trial_dup
        bad_trials += bool(trial_lost or trial_dup)
    return {
        "trials": trials,
        "events_lost": lost,
        "events_duplicated": duplicated,
        "trials_with_loss_or_dup": bad_trials,
    }
