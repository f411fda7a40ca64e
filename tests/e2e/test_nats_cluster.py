"""A NATS node lost mid-run (``APEX_NATS_CLUSTER=3 apex up``): ten runs in flight, one
node SIGKILLed (a follower of the event log, then its leader), restarted by ``apex up``
fifteen seconds later. Every run ends once and completes; every client, connected
throughout, saw every event of its thread once and in order, exactly the events a full
replay shows afterwards (nothing acknowledged was lost); every service reconnected to a
surviving node; the restarted node rejoins and holds the whole log again.

Prints the time from the node's death to the first event stored after it that reached a
client (the ``node loss`` figure of docs/durability.md)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from websockets.exceptions import ConnectionClosed

from apex_cli.config import START_ORDER
from apex_cli.demo_data import generate
from apex_contracts import TERMINAL
from apex_contracts.streams import APEX_EVT, KV_TOOL_LEDGER, STREAMS
from apex_runtime import nats_servers
from tests.e2e.platform import Platform, User, platform_env
from tests.e2e.wsclient import open_socket, recv, send

NODES = ("nats-1", "nats-2", "nats-3")
SERVICES = START_ORDER
RUNS = 10
DOWN_S = 15
QUESTIONS = (
    "Where is my LLM spend going and how do I cut it?",
    "Which models are slowest for us?",
    "Could caching cut our costs?",
)


@dataclass
class Client:
    """One user's socket on one run, reading every frame until the run ends."""

    user: User
    thread_id: str = ""
    run_id: str = ""
    events: list[tuple[float, int, dict[str, Any]]] = field(default_factory=list)
    resent: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)


@pytest.fixture(scope="module")
def cluster_platform() -> Iterator[tuple[Platform, list[User]]]:
    home = Path(tempfile.mkdtemp(prefix="apex-cluster-"))
    home.chmod(0o755)
    env = platform_env(home)
    env["APEX_NATS_CLUSTER"] = "3"
    env["APEX_EMBEDDED_RESTART_S"] = str(DOWN_S)
    env["APEX_MAX_RUNS_PER_USER"] = str(RUNS)
    platform = Platform(home, env)
    try:
        platform.start(timeout=240)
        users = [platform.register() for _ in range(2)]
        for user in users:  # runs with data: several tool calls each, long enough to be hit
            platform.upload(user, list(generate(days=3, seed=len(user.email))))
        yield platform, users
    finally:
        platform.stop()


@pytest.mark.slow
@pytest.mark.timeout(420)
@pytest.mark.parametrize("victim", ["follower", "leader"])
async def test_a_nats_node_lost_mid_run(cluster_platform: tuple[Platform, list[User]], victim: str) -> None:
    platform, users = cluster_platform
    env = platform.recorded_env()
    assert len(nats_servers(env["APEX_NATS_URL"])) == 3 and env["APEX_NATS_REPLICAS"] == "3"
    await _check_replicas(env["APEX_NATS_URL"], env["APEX_NATS_CREDS"])

    leader = _leader(platform, APEX_EVT.name)
    node = leader if victim == "leader" else next(n for n in NODES if n != leader)
    clients = [Client(users[i % len(users)]) for i in range(RUNS)]
    readers = [asyncio.create_task(_run(platform, c, QUESTIONS[i % 3])) for i, c in enumerate(clients)]
    await _until(lambda: all(c.run_id for c in clients), 120, "every message accepted")

    old_pid = platform.kill(node)
    killed_at, killed_wall = time.monotonic(), time.time()
    in_flight = [c for c in clients if not c.done.is_set()]
    print(f"\n{node} ({victim} of {APEX_EVT.name}) SIGKILLed with {len(in_flight)} of {RUNS} runs in flight")
    assert in_flight, "every run ended before the kill: nothing was in flight"
    await _until(lambda: _services_on(platform, set(NODES) - {node}), 60, "services on the other nodes")

    await asyncio.wait_for(asyncio.gather(*readers), 240)
    after = [
        (arrived - killed_at, seq)
        for c in in_flight
        for arrived, seq, event in c.events
        if _stored_after(event, killed_wall)
    ]
    assert after, "no event of a run in flight was stored after the kill"
    reached = min(at for at, _seq in after)
    stored = (
        await _stored_at(env["APEX_NATS_URL"], env["APEX_NATS_CREDS"], min(seq for _at, seq in after))
        - killed_wall
    )
    print(
        f"{node} lost: the log took writes again {stored:.2f} s after its death; the first event "
        f"stored after it reached a client {reached:.2f} s after it"
    )

    for client in clients:
        await _check_client(platform, client)
    print(f"{RUNS} runs completed once each; {sum(c.resent for c in clients)} resends by the gateway")

    await asyncio.to_thread(platform.wait_restarted, node, old_pid, DOWN_S + 60)
    caught_up = await _caught_up(platform, node, timeout=90)
    print(f"{node} restarted and holds the whole log again {caught_up:.1f} s after its restart")


async def _run(platform: Platform, client: Client, text: str) -> None:
    ws = await open_socket(platform.ws_url, client.user.access_token, open_timeout=30)
    pinger = asyncio.create_task(_ping(ws))  # a run held up by the node loss is not an idle socket
    try:
        await recv(ws)  # session.ready
        await send(ws, {"type": "message.send", "client_msg_id": uuid.uuid4().hex, "text": text})
        last = 0
        while True:
            frame = await recv(ws, timeout=180)
            if frame["type"] == "message.accepted":
                client.thread_id, client.run_id = frame["thread_id"], frame["run_id"]
            elif frame["type"] == "error":
                raise AssertionError(f"error frame: {frame}")
            elif frame["type"] == "event":
                seq = frame["seq"]
                await send(ws, {"type": "event.ack", "thread_id": frame["thread_id"], "seq": seq})
                if seq <= last:  # sent again (same seq) because our ack came late
                    client.resent += 1
                    continue
                last = seq
                event = frame["event"]
                client.events.append((time.monotonic(), seq, event))
                if event.get("run_id") == client.run_id and event["type"] in TERMINAL:
                    client.done.set()
                    return
    finally:
        pinger.cancel()
        await ws.close()


async def _ping(ws: Any) -> None:
    with contextlib.suppress(ConnectionClosed):
        while True:
            await asyncio.sleep(10)
            await send(ws, {"type": "ping"})


async def _check_client(platform: Platform, client: Client) -> None:
    live = [(seq, event["id"]) for _at, seq, event in client.events]
    async with httpx.AsyncClient(timeout=30) as http:
        for _ in range(20):  # a replica answering may lag the leader by a moment: read again
            answer = await http.get(
                f"{platform.gateway}/api/v1/threads/{client.thread_id}/events",
                params={"after_seq": 0, "limit": 5000},
                headers={"Authorization": f"Bearer {client.user.access_token}"},
            )
            answer.raise_for_status()
            if answer.json()["events"] and answer.json()["events"][-1]["seq"] >= live[-1][0]:
                break
            await asyncio.sleep(0.5)
    replay = [(item["seq"], item["event"]["id"]) for item in answer.json()["events"]]
    ran = [
        item["event"]["type"]
        for item in answer.json()["events"]
        if item["event"].get("run_id") == client.run_id
    ]
    assert ran[-1] in TERMINAL, (
        f"run {client.run_id}: facts after its ending: {ran[ran.index('run.completed') :]}"
    )
    assert live == replay, f"run {client.run_id}: what the client saw live differs from the log"
    ids = [event_id for _seq, event_id in replay]
    assert len(ids) == len(set(ids)), "a fact twice in the log"
    kinds = [e["type"] for _at, _seq, e in client.events if e.get("run_id") == client.run_id]
    assert [k for k in kinds if k in TERMINAL] == ["run.completed"], kinds
    assert kinds[-1] == "run.completed", kinds


def _stored_after(event: dict[str, Any], wall: float) -> bool:
    return datetime.fromisoformat(event["occurred_at"]).timestamp() > wall


async def _check_replicas(url: str, creds: str) -> None:
    nc = await nats.connect(nats_servers(url), user_credentials=creds)
    try:
        js = nc.jetstream()
        for name in [spec.name for spec in STREAMS] + [f"KV_{KV_TOOL_LEDGER}"]:
            assert (await js.stream_info(name)).config.num_replicas == 3, name
    finally:
        await nc.close()


async def _stored_at(url: str, creds: str, seq: int) -> float:
    """When JetStream stored APEX_EVT message ``seq`` (epoch seconds)."""
    nc = await nats.connect(nats_servers(url), user_credentials=creds)
    try:
        msg = await nc.jetstream().get_msg(APEX_EVT.name, seq)
    finally:
        await nc.close()
    assert msg.time is not None
    return msg.time.timestamp()


def _monitor(platform: Platform, node: str, path: str) -> dict[str, Any]:
    config = (platform.home / ".apex" / node / "nats.conf").read_text()
    port = re.search(r"^http: 127\.0\.0\.1:(\d+)$", config, re.MULTILINE)
    assert port is not None
    with urllib.request.urlopen(f"http://127.0.0.1:{port[1]}{path}", timeout=5) as answer:
        return json.loads(answer.read())  # type: ignore[no-any-return]


def _stream(platform: Platform, node: str, stream: str) -> dict[str, Any]:
    page = _monitor(platform, node, "/jsz?streams=true&consumers=false")
    details = [d for a in page.get("account_details", []) for d in a.get("stream_detail", [])]
    return next(d for d in details if d["name"] == stream)


def _leader(platform: Platform, stream: str) -> str:
    for node in NODES:
        try:
            leader = (_stream(platform, node, stream).get("cluster") or {}).get("leader")
        except (OSError, StopIteration):
            continue
        if leader:
            return str(leader)
    raise AssertionError(f"no node names a leader of {stream}")


def _services_on(platform: Platform, nodes: set[str]) -> bool:
    names: set[str] = set()
    for node in nodes:
        try:
            page = _monitor(platform, node, "/connz?limit=1024")
        except OSError:
            return False
        names |= {str(c.get("name") or "").split("-", 1)[0] for c in page.get("connections", [])}
    return set(SERVICES) <= names


async def _caught_up(platform: Platform, node: str, timeout: float) -> float:
    """Seconds until ``node`` holds APEX_EVT up to the leader's last seq (and reports it
    healthy); a failure names what it held."""
    started = time.monotonic()
    seen: dict[str, Any] = {}
    while time.monotonic() - started < timeout:
        try:
            healthy = _monitor(platform, node, "/healthz").get("status") == "ok"
            seen = _stream(platform, node, APEX_EVT.name)["state"]
            leader = _leader(platform, APEX_EVT.name)
            target = _stream(platform, leader, APEX_EVT.name)["state"]
        except (OSError, StopIteration):
            await asyncio.sleep(0.5)
            continue
        if healthy and seen["last_seq"] >= target["last_seq"] and seen["messages"] == target["messages"]:
            return time.monotonic() - started
        await asyncio.sleep(0.5)
    raise AssertionError(f"{node} did not catch up in {timeout:.0f} s: {seen}")


async def _until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)
