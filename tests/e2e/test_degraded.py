"""One failing dependency never takes down the front door (issue 17). The whole platform
as processes (``apex up``); services are frozen with SIGSTOP (alive to ``apex up``, so
not restarted, but silent: no heartbeat, no answer), Postgres likewise:

- tools, persistence and the orchestrator frozen: every gateway stays ready, serves a
  thread's history from the stream, answers the thread list with a typed retryable 503,
  and accepts a new message whose run waits visibly (``run.queued`` with ``reason:
  waiting_for_service``) and finishes once they are back;
- Postgres frozen: the gateway and auth stay ready; history still reads; a login is a
  typed ``store_unavailable``;
- SIGTERM on a gateway ends its SSE streams with a final ``shutting_down`` event, exits
  cleanly, and the acks it received are flushed to persistence."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import psutil
import pytest

from apex_cli.embedded import free_port, send_signal
from apex_contracts import TERMINAL
from tests.e2e.platform import Platform, User, platform_env
from tests.e2e.wsclient import open_socket, recv, send, until_terminal

QUESTION = "Where is my LLM spend going?"


@pytest.fixture(scope="module")
def platform() -> Iterator[Platform]:
    home = Path(tempfile.mkdtemp(prefix="apex-degraded-"))
    home.chmod(0o755)
    running = Platform(home, platform_env(home))
    running.start()
    yield running
    running.stop()


@contextlib.contextmanager
def frozen(pids: list[int]) -> Iterator[None]:
    for pid in pids:
        send_signal(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def poll(check: Callable[[], Any], timeout: float = 60.0, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, "not reached in time"
        time.sleep(every)


def readyz(url: str) -> tuple[int, dict[str, Any]]:
    """The status and body of /readyz; (0, {}) while nothing listens yet."""
    try:
        answer = httpx.get(f"{url}/readyz", timeout=10)
    except httpx.TransportError:
        return 0, {}
    return answer.status_code, answer.json()


async def chat(platform: Platform, user: User) -> tuple[str, str]:
    ws = await open_socket(platform.ws_url, user.access_token)
    await recv(ws)
    await send(ws, {"type": "message.send", "client_msg_id": uuid.uuid4().hex, "text": QUESTION})
    accepted = await recv(ws)
    await until_terminal(ws, accepted["run_id"], timeout=120)
    await ws.close()
    return accepted["thread_id"], accepted["run_id"]


def events(platform: Platform, user: User, thread_id: str) -> list[dict[str, Any]]:
    answer = platform.api(user, "GET", f"/api/v1/threads/{thread_id}/events")
    assert answer.status_code == 200, answer.text
    return [item["event"] for item in answer.json()["events"]]


async def test_the_gateway_stays_ready_and_serves_history_while_services_are_down(platform: Platform) -> None:
    user = platform.register()
    thread_id, first_run = await chat(platform, user)
    down = ("tools", "persistence", "orchestrator")
    with frozen([platform.pid(name) for name in down]):
        # the gateway sees their heartbeats stop, and stays ready
        status, body = poll(
            lambda: (
                set(down)
                <= set((answer := readyz(platform.gateway))[1]["details"]["services_missing"].split())
                and answer
            )
        )
        assert status == 200 and body["ready"] is True
        assert body["dependencies"]["services"] is False

        history = events(platform, user, thread_id)
        assert any(e["type"] in TERMINAL and e["run_id"] == first_run for e in history)

        listing = platform.api(user, "GET", "/api/v1/threads")
        assert listing.status_code == 503
        assert listing.json()["error"]["code"] in ("service_unavailable", "store_unavailable")
        assert listing.json()["error"]["retryable"] is True

        sent = platform.api(
            user,
            "POST",
            f"/api/v1/threads/{thread_id}/messages",
            json={"text": "and by workload?"},
            headers={"Idempotency-Key": uuid.uuid4().hex},
        )
        assert sent.status_code == 202, sent.text
        queued_run = sent.json()["run_id"]
        queued = [
            e
            for e in events(platform, user, thread_id)
            if e["run_id"] == queued_run and e["type"] == "run.queued"
        ]
        assert len(queued) == 1
        assert queued[0]["data"]["reason"] == "waiting_for_service"
        assert {"orchestrator", "tools"} <= set(queued[0]["data"]["waiting_for"])
        assert readyz(platform.gateway)[0] == 200
    # back: the queued run starts and ends
    ended = poll(
        lambda: [
            e
            for e in events(platform, user, thread_id)
            if e["run_id"] == queued_run and e["type"] in TERMINAL
        ],
        timeout=180,
    )
    assert ended[0]["type"] == "run.completed"


def _postgres_pids(platform: Platform) -> list[int]:
    main = psutil.Process(platform.pid("postgres"))
    return [main.pid, *(child.pid for child in main.children(recursive=True))]


async def test_postgres_down_keeps_the_doors_open_with_typed_errors(platform: Platform) -> None:
    user = platform.register()
    thread_id, _ = await chat(platform, user)
    with frozen(_postgres_pids(platform)):
        status, body = poll(
            lambda: (answer := readyz(platform.auth))[1]["dependencies"]["postgres"] is False and answer
        )
        assert status == 200 and body["ready"] is True
        assert readyz(platform.gateway)[0] == 200
        assert events(platform, user, thread_id), "history reads from the stream"
        login = httpx.post(
            f"{platform.gateway}/auth/login",
            json={"email": user.email, "password": user.password},
            timeout=60,
        )
        assert login.status_code == 503, login.text
        assert login.json()["error"]["code"] == "store_unavailable"
        assert login.json()["error"]["retryable"] is True
    login = poll(
        lambda: (
            (
                answer := httpx.post(
                    f"{platform.gateway}/auth/login",
                    json={"email": user.email, "password": user.password},
                    timeout=30,
                )
            ).status_code
            == 200
            and answer
        ),
        timeout=120,
    )
    assert login.json()["access_token"]


async def _read_sse(url: str, token: str, lines: list[str], opened: asyncio.Event) -> None:
    async with httpx.AsyncClient(timeout=None) as http:
        headers = {"Authorization": f"Bearer {token}"}
        async with http.stream("GET", url, headers=headers) as answer:
            assert answer.status_code == 200
            async for line in answer.aiter_lines():
                lines.append(line)
                if line.startswith("retry:") and not opened.is_set():
                    opened.set()


async def test_sigterm_ends_sse_streams_and_flushes_the_last_acks(platform: Platform) -> None:
    port = free_port()
    gateway = platform.spawn_service(
        "gateway",
        APEX_GATEWAY_PORT=str(port),
        APEX_GATEWAY_DRAIN_S="2",
        APEX_ALLOWED_ORIGINS=f'["http://127.0.0.1:{port}"]',
    )
    try:
        poll(lambda: readyz(f"http://127.0.0.1:{port}")[0] == 200)
        user = platform.register()
        thread_id, _ = await chat(platform, user)
        head = max(
            int(item["seq"])
            for item in platform.api(user, "GET", f"/api/v1/threads/{thread_id}/events").json()["events"]
        )

        lines: list[str] = []
        opened = asyncio.Event()
        url = f"http://127.0.0.1:{port}/api/v1/threads/{thread_id}/stream"
        reader = asyncio.create_task(_read_sse(url, user.access_token, lines, opened))
        await asyncio.wait_for(opened.wait(), 30)
        ws = await open_socket(f"ws://127.0.0.1:{port}/ws", user.access_token)
        await recv(ws)
        await send(ws, {"type": "thread.subscribe", "thread_id": thread_id, "after_seq": 0})
        while (frame := await recv(ws)).get("seq") != head:  # the replay, up to the last event
            assert frame["type"] in ("thread.subscribed", "event"), frame
        await send(ws, {"type": "event.ack", "thread_id": thread_id, "seq": head})
        await send(ws, {"type": "ping"})
        while (await recv(ws))["type"] != "pong":  # the ack is handled before the pong
            pass

        gateway.send_signal(signal.SIGTERM)
        await asyncio.wait_for(reader, 30)  # the stream ends (it would hang without the drain)
        code = await asyncio.to_thread(gateway.wait, 30)
        assert code == 0
        with contextlib.suppress(Exception):
            await ws.close()
    finally:
        if gateway.poll() is None:
            gateway.kill()
            gateway.wait(10)

    error = next(line for line in lines if line.startswith("data:") and "shutting_down" in line)
    assert orjson.loads(error.removeprefix("data:"))["retryable"] is True
    assert any(line == "event: error" for line in lines)
    retry = [int(line.removeprefix("retry:")) for line in lines if line.startswith("retry:")]
    assert retry[-1] <= 2000, "the reconnect is spread over the drain window"

    connection = await asyncpg.connect(platform.recorded_env()["APEX_POSTGRES_DSN"])
    try:
        flushed = await connection.fetchval(
            "SELECT seq FROM apex.delivery_cursors WHERE tenant_id = $1 AND user_id = $2 AND thread_id = $3",
            user.tenant_id,
            user.user_id,
            thread_id,
        )
    finally:
        await connection.close()
    assert flushed == head
