"""What Apex loses when a worker is killed mid-run: the client keeps its socket, the
service doing the run's work is SIGKILLed (at the moment ``KILL_AT`` names for it, on the
golden path of an empty tenant), ``apex up`` starts it again, and the run finishes from
its events. Every event the
client received is compared with the thread's full log: events lost (in the log, never
delivered) and duplicated (the same event, by id or by seq, delivered twice)."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime
from typing import Any

import httpx
import orjson

from apex_contracts import TERMINAL
from bench.golden import QUESTION, open_ws
from tests.e2e.platform import Platform, User


def _agent(event: dict[str, Any]) -> str | None:
    return event.get("agent") or (event.get("data") or {}).get("agent")


KILL_AT = {
    # triage's step waits for its tool's result
    "agents": lambda e: e["type"] == "tool_executing" and _agent(e) == "triage",
    # the orchestrator holds the run (its run.start unacked) and must order the next steps
    "orchestrator": lambda e: e["type"] == "agent_started" and _agent(e) == "triage",
    # triage's tool call has started
    "tools": lambda e: e["type"] == "tool_executing" and _agent(e) == "triage",
}


async def _full_log(platform: Platform, user: User, thread_id: str) -> list[str]:
    ws = await open_ws(platform, user)
    await ws.send(orjson.dumps({"type": "thread.subscribe", "thread_id": thread_id, "after_seq": 0}).decode())
    head = orjson.loads(await ws.recv())["head_seq"]
    ids: list[str] = []
    last = 0
    while last < head:
        frame = orjson.loads(await asyncio.wait_for(ws.recv(), 60))
        if frame["type"] == "event":
            ids.append(frame["event"]["id"])
            last = frame["seq"]
    await ws.close()
    return ids


async def _ready(url: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            try:
                if (await http.get(url, timeout=1)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise TimeoutError(url)


async def one_trial(platform: Platform, user: User, service: str) -> dict[str, Any]:
    kill_at = KILL_AT[service]
    ws = await open_ws(platform, user)
    await ws.send(
        orjson.dumps({"type": "message.send", "client_msg_id": uuid.uuid4().hex, "text": QUESTION}).decode()
    )
    run_id = thread_id = None
    ids: list[str] = []
    seqs: list[int] = []
    killed_at = old_pid = None
    first_after: float | None = None
    outcome = "timeout"
    async with asyncio.timeout(300):
        while True:
            frame = orjson.loads(await ws.recv())
            if frame["type"] == "message.accepted":
                run_id, thread_id = frame["run_id"], frame["thread_id"]
            if frame["type"] != "event" or frame["event"].get("run_id") != run_id:
                continue
            event = frame["event"]
            ids.append(event["id"])
            seqs.append(frame["seq"])
            stamped = datetime.fromisoformat(event["occurred_at"]).timestamp()
            if killed_at is not None and first_after is None and stamped > killed_at:
                first_after = time.time()  # the first event written after the kill
            if killed_at is None and kill_at(event):
                old_pid, killed_at = platform.kill(service), time.time()
            if event["type"] in TERMINAL:
                outcome = event["type"]
                break
    await ws.close()
    if old_pid is not None:
        await asyncio.to_thread(platform.wait_restarted, service, old_pid, 120.0)
        await _ready(f"http://127.0.0.1:{platform.env[f'APEX_{service.upper()}_PORT']}/readyz")
    full = await _full_log(platform, user, str(thread_id))
    return {
        "service": service,
        "killed": killed_at is not None,
        "outcome": outcome,
        "events": len(ids),
        "events_lost": len(set(full) - set(ids)),
        "events_duplicated": max(len(ids) - len(set(ids)), len(seqs) - len(set(seqs))),
        "kill_to_next_event_s": round(first_after - killed_at, 2) if killed_at and first_after else None,
    }


async def trials(platform: Platform, services: list[str]) -> dict[str, Any]:
    """One trial per entry of ``services`` (each its own thread)."""
    user = platform.register()
    results = [await one_trial(platform, user, service) for service in services]
    return {
        "trials": len(results),
        "events_lost": sum(r["events_lost"] for r in results),
        "events_duplicated": sum(r["events_duplicated"] for r in results),
        "trials_with_loss_or_dup": sum(1 for r in results if r["events_lost"] or r["events_duplicated"]),
        "runs_finished": sum(1 for r in results if r["outcome"] != "timeout"),
        "each": results,
    }
