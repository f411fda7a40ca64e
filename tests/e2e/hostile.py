"""Helpers of the hostile-client tests (tests/e2e/test_hostile_*.py): the platform they
share, extra replicas, short-lived tokens, threads made of published events."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import nats
import orjson

from apex_contracts import (
    AgentThinking,
    AgentThinkingData,
    MessageCreated,
    MessageCreatedData,
    NotFound,
    Scope,
    new_id,
)
from apex_contracts.queries import Q_EVENTS_ARCHIVE, EventsArchive, EventsPage
from apex_runtime import Bus
from apex_runtime.bus import NatsBus
from tests.e2e.platform import Platform, User, platform_env

SEND_QUEUE = 64
REVOCATION_CHECK_S = 2
MAX_CONNECTIONS = 3
SHORT_TTL_S = 10  # the auth replica of these tests mints 10 s access tokens


def hostile_env(home: Path) -> dict[str, str]:
    env = platform_env(home)
    unlimited = "1000000"
    env.update(
        {
            "APEX_WS_RATE_PER_S": unlimited,
            "APEX_WS_RATE_BURST": unlimited,
            "APEX_WS_USER_RATE_PER_S": unlimited,
            "APEX_WS_USER_RATE_BURST": unlimited,
            "APEX_WS_SEND_QUEUE": str(SEND_QUEUE),
            "APEX_WS_REVOCATION_CHECK_S": str(REVOCATION_CHECK_S),
            "APEX_WS_MAX_CONNECTIONS_PER_USER": str(MAX_CONNECTIONS),
        }
    )
    return env


def spawn_ready(platform: Platform, name: str, ready_url: str, **env: str) -> subprocess.Popen[bytes]:
    proc = platform.spawn_service(name, **env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} replica exited with {proc.returncode}")
        try:
            if httpx.get(ready_url, timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    proc.kill()
    raise TimeoutError(f"{name} replica not ready at {ready_url}")


def login(auth_url: str, user: User) -> dict[str, Any]:
    response = httpx.post(
        f"{auth_url}/auth/login", json={"email": user.email, "password": user.password}, timeout=30
    )
    response.raise_for_status()
    return response.json()  # type: ignore[no-any-return]


def refresh(auth_url: str, refresh_token: str) -> dict[str, Any]:
    response = httpx.post(f"{auth_url}/auth/refresh", json={"refresh_token": refresh_token}, timeout=30)
    response.raise_for_status()
    return response.json()  # type: ignore[no-any-return]


async def publish_thread(platform: Platform, user: User, events: int, text: str = "x" * 200) -> str:
    """A thread of ``events`` events (a message, then thinking), published as the
    services would; returns its id."""
    nc = await nats.connect(platform.recorded_env()["APEX_NATS_URL"], **platform.nats_options())
    bus = NatsBus(nc)
    scope = Scope(
        tenant_id=user.tenant_id, user_id=user.user_id, thread_id=new_id("thr"), run_id=new_id("run")
    )
    try:
        await bus.publish_event(
            scope.make(
                MessageCreated,
                MessageCreatedData(message_id=new_id("msg"), content="hello", client_msg_id=new_id("msg")),
                id=f"{scope.run_id}:message",
            )
        )
        for n in range(events - 1):
            await publish_thinking(bus, scope, n, text)
    finally:
        await nc.close()
    return scope.thread_id


async def publish_thinking(bus: Bus, scope: Scope, n: int, text: str = "thinking") -> int:
    return await bus.publish_event(
        scope.make(
            AgentThinking,
            AgentThinkingData(agent="triage", step=1, text=text),
            id=f"{scope.run_id}:1:thinking:{n}",
        )
    )


async def archived_seqs(platform: Platform, user: User, thread_id: str) -> list[int]:
    """What the Postgres archive holds of the thread (asked of persistence directly)."""
    nc = await nats.connect(platform.recorded_env()["APEX_NATS_URL"], **platform.nats_options())
    try:
        page = await NatsBus(nc).query(
            Q_EVENTS_ARCHIVE,
            EventsArchive(tenant_id=user.tenant_id, user_id=user.user_id, thread_id=thread_id, limit=5000),
            EventsPage,
        )
    except NotFound:  # not projected yet
        return []
    finally:
        await nc.close()
    return [e.seq for e in page.events]


def sse_events(lines: list[str]) -> list[dict[str, Any]]:
    """(event name, data) of each SSE message in ``lines``."""
    out: list[dict[str, Any]] = []
    name = "message"
    for line in lines:
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            out.append({"event": name, **orjson.loads(line[6:])})
            name = "message"
    return out


async def sse(platform: Platform, user: User, thread_id: str, count: int) -> list[dict[str, Any]]:
    """The first ``count`` messages of the thread's SSE stream."""
    lines: list[str] = []
    headers = {"Authorization": f"Bearer {user.access_token}"}
    async with (
        httpx.AsyncClient(timeout=30) as http,
        http.stream(
            "GET", f"{platform.gateway}/api/v1/threads/{thread_id}/stream", headers=headers
        ) as response,
    ):
        assert response.status_code == 200
        async for line in response.aiter_lines():
            lines.append(line)
            if len(sse_events(lines)) >= count:
                break
    return sse_events(lines)
