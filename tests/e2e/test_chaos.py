"""Chaos over the whole platform (``apex up``): for each service in turn (orchestrator,
agents, tools, persistence, gateway, and NATS itself) start many runs, SIGKILL the
service at a random moment, let ``apex up`` restart it, and check what every client
relies on: each run ends exactly once (and completes: a crash is a pause, not a loss), a
full replay of each thread has no event twice, every agent step completes once, every
tool call completes once.

Every choice (which user, when each message is sent, when the kill comes) is drawn from
a seeded generator; the seed is printed, and ``APEX_CHAOS_SEED=<seed>`` replays it.
``APEX_CHAOS_ROUNDS=20`` runs twenty rounds in a row on the same platform (``make
test`` runs one).
"""

from __future__ import annotations

import asyncio
import os
import random
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import WebSocketException

from apex_cli.demo_data import generate
from apex_contracts import TERMINAL
from tests.e2e.platform import Platform, User, platform_env
from tests.e2e.wsclient import open_socket, recv, send

VICTIMS = ("orchestrator", "agents", "tools", "persistence", "gateway", "nats")
ROUNDS = int(os.environ.get("APEX_CHAOS_ROUNDS", "1"))
SEED = int(os.environ.get("APEX_CHAOS_SEED") or random.SystemRandom().randrange(1 << 31))
RUNS = 6
QUESTIONS = (
    "Where is my LLM spend going and how do I cut it?",
    "Which models are slowest for us?",
    "Could caching cut our costs?",
    "How much did we spend last week?",
)


@dataclass
class Started:
    user: User
    client_msg_id: str
    thread_id: str = ""
    run_id: str = ""


@pytest.fixture(scope="module")
def chaos() -> Iterator[tuple[Platform, list[User]]]:
    home = Path(tempfile.mkdtemp(prefix="apex-chaos-"))
    home.chmod(0o755)
    env = platform_env(home)
    env["APEX_MAX_RUNS_PER_USER"] = "1"  # a user's second message queues: chaos meets double-texting
    platform = Platform(home, env)
    try:
        platform.start()
        users = [platform.register() for _ in range(3)]
        for user in users[:2]:  # two users with data (long runs, many tool calls), one without
            platform.upload(user, list(generate(days=3, seed=len(user.email))))
        print(f"\nchaos seed {SEED} (APEX_CHAOS_SEED={SEED} replays it), {ROUNDS} round(s)")
        yield platform, users
    finally:
        platform.stop()


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("victim", VICTIMS)
@pytest.mark.parametrize("round_no", range(ROUNDS))
async def test_any_process_can_die_mid_run(
    chaos: tuple[Platform, list[User]], round_no: int, victim: str
) -> None:
    platform, users = chaos
    rng = random.Random(f"{SEED}:{round_no}:{victim}")
    for user in users:
        await _login(platform, user)
    runs = [Started(rng.choice(users), uuid.uuid4().hex) for _ in range(RUNS)]
    delays = sorted(rng.uniform(0.0, 2.5) for _ in runs)
    kill_after = rng.uniform(0.3, 2.5)
    where = f"seed {SEED}, round {round_no}, {victim} killed {kill_after:.2f} s in"
    print(f"\n{where}")

    sends = [
        asyncio.create_task(_send_after(platform, run, delay, rng.choice(QUESTIONS)))
        for run, delay in zip(runs, delays, strict=True)
    ]
    await asyncio.sleep(kill_after)
    old_pid = platform.kill(victim)
    await asyncio.to_thread(platform.wait_restarted, victim, old_pid, 60.0)
    await asyncio.gather(*sends)

    for run in runs:
        events = await _until_terminal(platform, run, where)
        try:
            _check(events, run, where)
        except AssertionError as failure:
            raise AssertionError(f"{failure}\n{_log_of(platform, run)}") from None
    print(f"{where}: {RUNS} runs completed once each")


async def _login(platform: Platform, user: User) -> None:
    """A fresh access token each round (twenty rounds outlive one)."""
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{platform.auth}/auth/login", json={"email": user.email, "password": user.password}, timeout=30
        )
        response.raise_for_status()
        user.access_token = response.json()["access_token"]


async def _send_after(platform: Platform, run: Started, delay: float, text: str) -> None:
    """Sends the message like a client that retries until it is accepted, with the same
    client_msg_id (the gateway, or the bus behind it, may be down for a while)."""
    await asyncio.sleep(delay)
    deadline = time.monotonic() + 90
    while True:
        try:
            ws = await open_socket(platform.ws_url, run.user.access_token, open_timeout=5)
            try:
                await recv(ws)  # session.ready
                await send(ws, {"type": "message.send", "client_msg_id": run.client_msg_id, "text": text})
                while True:
                    frame = await recv(ws, timeout=15)
                    if frame["type"] == "message.accepted":
                        run.thread_id, run.run_id = frame["thread_id"], frame["run_id"]
                        return
                    if frame["type"] == "error":
                        break
            finally:
                await ws.close()
        except (OSError, TimeoutError, WebSocketException):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"message {run.client_msg_id} was never accepted")
        await asyncio.sleep(0.5)


async def _until_terminal(
    platform: Platform, run: Started, where: str, timeout: float = 120
) -> list[dict[str, Any]]:
    """The full replay of the run's thread (HTTP, from seq 0) once the run has ended."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=10) as http:
        while time.monotonic() < deadline:
            try:
                response = await http.get(
                    f"{platform.gateway}/api/v1/threads/{run.thread_id}/events",
                    params={"after_seq": 0, "limit": 5000},
                    headers={"Authorization": f"Bearer {run.user.access_token}"},
                )
            except httpx.HTTPError:
                response = None
            if response is not None and response.status_code == 200:
                events = [item["event"] | {"seq": item["seq"]} for item in response.json()["events"]]
                if any(e.get("run_id") == run.run_id and e["type"] in TERMINAL for e in events):
                    return events
            await asyncio.sleep(0.5)
    raise AssertionError(f"{where}: run {run.run_id} did not end within {timeout:.0f} s\n{platform.tail()}")


def _check(thread: list[dict[str, Any]], run: Started, where: str) -> None:
    ids = [e["id"] for e in thread]
    assert len(ids) == len(set(ids)), f"{where}: a fact twice in the replay: {_twice(ids)}"
    seqs = [e["seq"] for e in thread]
    assert seqs == sorted(set(seqs)), f"{where}: replay out of order"
    mine = [e for e in thread if e.get("run_id") == run.run_id]
    kinds = [e["type"] for e in mine]
    endings = [k for k in kinds if k in TERMINAL]
    assert endings == ["run.completed"], f"{where}: run {run.run_id} ended {endings}: {kinds}"
    assert kinds[-1] == "run.completed", f"{where}: facts after the ending: {kinds}"
    started = [e["data"]["step"] for e in mine if e["type"] == "agent_started"]
    completed = [e["data"]["step"] for e in mine if e["type"] == "agent_completed"]
    failed = {e["data"]["step"]: e["data"]["error"] for e in mine if e["type"] == "agent_failed"}
    assert sorted(started) == sorted(completed) == sorted(set(started)), (
        f"{where}: agent steps started {started}, completed {completed}, failed {failed}"
    )
    executing = [e["data"]["call_id"] for e in mine if e["type"] == "tool_executing"]
    finished = [e["data"]["call_id"] for e in mine if e["type"] == "tool_completed"]
    assert sorted(executing) == sorted(finished) == sorted(set(executing)), (
        f"{where}: tool calls executing {executing}, completed {finished}"
    )


def _log_of(platform: Platform, run: Started, lines: int = 80) -> str:
    """What the platform logged about the run, and every warning: a failed round says why."""
    text = platform.log_path.read_text(errors="replace").splitlines()
    kept = [line for line in text if run.run_id in line or " WARNING " in line or " ERROR " in line]
    return "\n".join(kept[-lines:])


def _twice(ids: list[str]) -> list[str]:
    return sorted({i for i in ids if ids.count(i) > 1})
