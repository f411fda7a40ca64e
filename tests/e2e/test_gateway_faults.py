"""The gateway under faults: killed mid-run, drained, several instances, a client that
never reads. Clients resume and get every event once; memory stays bounded."""

from __future__ import annotations

import asyncio
import signal
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import nats
import psutil
import pytest
from websockets.exceptions import ConnectionClosed

from apex_cli.embedded import free_port
from apex_client import ApexSocket
from apex_contracts import AgentThinking, AgentThinkingData, Scope, new_id
from apex_runtime.bus import NatsBus
from tests.e2e.platform import Platform, User, platform_env
from tests.e2e.wsclient import open_socket, recv, send, until_terminal

QUESTION = "Where is my LLM spend going?"


@pytest.fixture(scope="module")
def hurt() -> Iterator[Platform]:
    home = Path(tempfile.mkdtemp(prefix="apex-faults-"))
    home.chmod(0o755)
    env = platform_env(home)
    env["APEX_WS_SEND_QUEUE"] = "64"
    env["APEX_WS_SEND_TIMEOUT_MS"] = "2000"
    running = Platform(home, env)
    running.start()
    yield running
    running.stop()


def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(url)


async def replay(url: str, user: User, thread_id: str) -> list[int]:
    ws = await open_socket(url, user.access_token)
    await recv(ws)
    await send(ws, {"type": "thread.subscribe", "thread_id": thread_id, "after_seq": 0})
    head = (await recv(ws))["head_seq"]
    seqs: list[int] = []
    while not seqs or seqs[-1] < head:
        frame = await recv(ws)
        if frame["type"] == "event":
            seqs.append(frame["seq"])
    await ws.close()
    return seqs


async def chat_through_drops(socket: ApexSocket, on_event: Any) -> list[dict[str, Any]]:
    await socket.send({"type": "message.send", "client_msg_id": uuid.uuid4().hex, "text": QUESTION})
    events: list[dict[str, Any]] = []
    async for frame in socket.frames():
        if frame["type"] == "event":
            events.append(frame)
            await on_event(len(events))
            if frame["event"]["type"] in ("run.completed", "run.failed", "run.cancelled"):
                return events
    return events


async def test_gateway_killed_mid_run_the_client_resumes_without_loss(hurt: Platform) -> None:
    user = hurt.register()
    killed: list[int] = []

    async def kill_once(count: int) -> None:
        if count == 3 and not killed:
            killed.append(hurt.kill("gateway", signal.SIGKILL))

    async with ApexSocket(hurt.ws_url, user.access_token, max_backoff_s=1.0) as socket:
        events = await asyncio.wait_for(chat_through_drops(socket, kill_once), 120)
    assert killed and socket.reconnects >= 1
    hurt.wait_restarted("gateway", killed[0])
    assert [e["seq"] for e in events] == await replay(hurt.ws_url, user, events[0]["thread_id"])


async def test_two_gateways_a_client_moves_between_them_and_logout_closes_both(hurt: Platform) -> None:
    port = free_port()
    second = hurt.spawn_service(
        "gateway", APEX_GATEWAY_PORT=str(port), APEX_ALLOWED_ORIGINS=f'["http://127.0.0.1:{port}"]'
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz")
        other_url = f"ws://127.0.0.1:{port}/ws"
        user = hurt.register()
        first = await open_socket(hurt.ws_url, user.access_token)
        await recv(first)
        await send(first, {"type": "message.send", "client_msg_id": uuid.uuid4().hex, "text": QUESTION})
        accepted = await recv(first)
        seen: list[dict[str, Any]] = []
        while len(seen) < 3:
            frame = await recv(first)
            if frame["type"] == "event":
                seen.append(frame)
        first.transport.abort()
        moved = await open_socket(other_url, user.access_token)
        await recv(moved)
        await send(
            moved,
            {"type": "thread.subscribe", "thread_id": accepted["thread_id"], "after_seq": seen[-1]["seq"]},
        )
        rest = [f for f in await until_terminal(moved, accepted["run_id"]) if f["type"] == "event"]
        assert [f["seq"] for f in seen + rest] == await replay(hurt.ws_url, user, accepted["thread_id"])

        on_first = await open_socket(hurt.ws_url, user.access_token)
        await recv(on_first)
        started = time.monotonic()
        response = httpx.post(
            f"{hurt.auth}/auth/logout", headers={"Authorization": f"Bearer {user.access_token}"}
        )
        assert response.status_code in (200, 204)
        for ws in (on_first, moved):
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await recv(ws, timeout=5)
            assert closed.value.rcvd is not None
            assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4401, "session_revoked")
        assert time.monotonic() - started < 1.5
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(30)


async def test_sigterm_drains_with_1012(hurt: Platform) -> None:
    port = free_port()
    extra = hurt.spawn_service("gateway", APEX_GATEWAY_PORT=str(port))
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz")
        user = hurt.register()
        ws = await open_socket(f"ws://127.0.0.1:{port}/ws", user.access_token)
        await recv(ws)
        extra.send_signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await recv(ws, timeout=15)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
        assert extra.wait(30) == 0
    finally:
        if extra.poll() is None:
            extra.kill()


async def test_a_client_that_never_reads_is_closed_4408_and_memory_stays_bounded(hurt: Platform) -> None:
    user = hurt.register()
    nats_url = hurt.recorded_env()["APEX_NATS_URL"]
    thread_id = new_id("thr")
    scope = Scope(tenant_id=user.tenant_id, user_id=user.user_id, thread_id=thread_id, run_id=new_id("run"))
    nc = await nats.connect(nats_url, **hurt.nats_options())
    bus = NatsBus(nc)
    filler = "x" * 4000
    for n in range(3000):
        await bus.publish_event(
            scope.make(
                AgentThinking,
                AgentThinkingData(agent="triage", step=1, text=filler),
                id=f"{scope.run_id}:1:thinking:{n}",
            )
        )
    await nc.close()
    gateway = psutil.Process(hurt.pid("gateway"))
    before = gateway.memory_info().rss

    ws = await open_socket(hurt.ws_url, user.access_token, max_queue=1)
    await recv(ws)
    await send(ws, {"type": "thread.subscribe", "thread_id": thread_id, "after_seq": 0})
    # not reading: the socket's outbox fills, the replay waits for room (2 s here), then
    # the gateway gives up on the client
    await asyncio.sleep(5)
    grown = gateway.memory_info().rss - before
    frames: list[dict[str, Any]] = []
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            frames.append(await recv(ws, timeout=30))
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4408, "slow_consumer")
    events = [f["seq"] for f in frames if f["type"] == "event"]
    assert 0 < len(events) < 3000 and events == sorted(set(events))
    assert grown < 150 * 1024 * 1024, f"gateway grew by {grown // 1024} KiB"
    again = await open_socket(hurt.ws_url, user.access_token)
    await recv(again)
    await send(again, {"type": "thread.subscribe", "thread_id": thread_id, "after_seq": events[-1]})
    answer = await recv(again)
    assert answer["type"] == "thread.subscribed", answer
    nxt = await recv(again)
    assert nxt["type"] == "event" and nxt["seq"] > events[-1], "it resumes from its last seq"
    await again.close()


async def _wait_archived(platform: Platform, user: User, thread_id: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        detail = platform.api(user, "GET", f"/api/v1/threads/{thread_id}")
        if detail.status_code == 200 and any(m["role"] == "assistant" for m in detail.json()["messages"]):
            return
        await asyncio.sleep(0.3)
    raise TimeoutError("the run was never archived")


async def test_replay_beyond_retention_comes_from_the_archive_or_says_so(hurt: Platform) -> None:
    user = hurt.register()
    ws = await open_socket(hurt.ws_url, user.access_token)
    await recv(ws)
    await send(ws, {"type": "message.send", "client_msg_id": uuid.uuid4().hex, "text": QUESTION})
    accepted = await recv(ws)
    original = [
        (f["seq"], f["event"]["id"])
        for f in await until_terminal(ws, accepted["run_id"])
        if f["type"] == "event"
    ]
    await ws.close()
    await _wait_archived(hurt, user, accepted["thread_id"])

    middle = original[len(original) // 2][0]
    nc = await nats.connect(hurt.recorded_env()["APEX_NATS_URL"], **hurt.nats_options())
    await nc.jetstream().purge_stream("APEX_EVT", seq=middle)  # retention took the first half
    await nc.close()

    persistence = psutil.Process(hurt.pid("persistence"))
    persistence.suspend()
    try:
        ws = await open_socket(hurt.ws_url, user.access_token)
        await recv(ws)
        await send(ws, {"type": "thread.subscribe", "thread_id": accepted["thread_id"], "after_seq": 0})
        assert (await recv(ws, 30))["type"] == "thread.subscribed"
        error = await recv(ws, 30)
        assert (error["code"], error["first_seq"]) == ("replay_incomplete", middle)
        rest = [
            (f["seq"], f["event"]["id"])
            for f in [await recv(ws) for _ in range(len(original) - len(original) // 2)]
        ]
        assert rest == original[len(original) // 2 :], "told, then given what is still there"
        await ws.close()
    finally:
        persistence.resume()

    ws = await open_socket(hurt.ws_url, user.access_token)
    await recv(ws)
    await send(ws, {"type": "thread.subscribe", "thread_id": accepted["thread_id"], "after_seq": 0})
    subscribed = await recv(ws)
    assert subscribed["head_seq"] == original[-1][0]
    replayed = [(f["seq"], f["event"]["id"]) for f in [await recv(ws) for _ in original]]
    assert replayed == original, "the archive fills in what the stream no longer holds"
    await ws.close()
