"""The fallbacks are real (issue 12): the events endpoint long-polls; SSE and the events
endpoint replay from the archive beyond retention or say ``replay_incomplete``; every
endpoint taking a thread id finds a thread whose events are only in the archive; and the
dashboards: the platform's for operators (configuration only), the tenant's for its admins."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import nats
import psutil
import pytest

from apex_cli.embedded import free_port
from apex_contracts import Scope
from apex_runtime.bus import NatsBus
from tests.e2e.hostile import archived_seqs, login, publish_thinking, publish_thread, spawn_ready, sse
from tests.e2e.platform import Platform, User
from tests.e2e.wsclient import open_socket, recv, send, until_terminal


def events_of(platform: Platform, user: User, thread_id: str, **params: Any) -> httpx.Response:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return platform.api(user, "GET", f"/api/v1/threads/{thread_id}/events?{query}")


async def test_the_events_endpoint_long_polls(hostile: Platform) -> None:
    user = hostile.register()
    thread_id = await publish_thread(hostile, user, 3)
    first = events_of(hostile, user, thread_id, after_seq=0, wait_ms=60_000)
    assert first.status_code == 200 and len(first.json()["events"]) == 3, "events exist: answered at once"
    head = first.json()["head_seq"]
    assert events_of(hostile, user, thread_id, after_seq=head, wait_ms=300).json()["events"] == []

    waiting = asyncio.create_task(
        asyncio.to_thread(events_of, hostile, user, thread_id, after_seq=head, wait_ms=60_000)
    )
    await asyncio.sleep(1.0)  # the poll is waiting now (a late publish is found by its re-read too)
    assert not waiting.done()
    nc = await nats.connect(hostile.recorded_env()["APEX_NATS_URL"], **hostile.nats_options())
    scope = Scope(tenant_id=user.tenant_id, user_id=user.user_id, thread_id=thread_id)
    published = time.monotonic()
    seq = await publish_thinking(NatsBus(nc), scope, 99)
    await nc.close()
    answer = await waiting
    latency = time.monotonic() - published
    assert [e["seq"] for e in answer.json()["events"]] == [seq]
    assert latency < 30, f"the long-poll answered {latency:.1f} s after the event (it waits up to 60 s)"
    print(f"\nlong-poll answered {latency * 1000:.0f} ms after the event was stored")


@pytest.fixture(scope="module")
def operator_auth(hostile: Platform) -> Iterator[tuple[str, User]]:
    """An auth replica whose configuration names one operator: (its URL, the operator)."""
    operator = hostile.register()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = spawn_ready(
        hostile,
        "auth",
        f"{url}/readyz",
        APEX_AUTH_PORT=str(port),
        APEX_OPERATOR_USERS=f'["{operator.user_id}"]',
    )
    yield url, operator
    proc.terminate()
    proc.wait(30)


async def test_operators_see_the_platform_and_tenant_admins_only_their_tenant(
    hostile: Platform, operator_auth: tuple[str, User]
) -> None:
    auth_url, operator = operator_auth
    operator.access_token = login(auth_url, operator)["access_token"]
    admin, stranger = hostile.register(), hostile.register()
    for user in (admin, stranger):
        ws = await open_socket(hostile.ws_url, user.access_token)
        await recv(ws)
        await send(ws, {"type": "message.send", "client_msg_id": uuid.uuid4().hex, "text": "spend?"})
        accepted = await recv(ws)
        await until_terminal(ws, accepted["run_id"])
        await ws.close()
        user.run_id = accepted["run_id"]  # type: ignore[attr-defined]

    me = httpx.get(f"{auth_url}/auth/me", headers={"Authorization": f"Bearer {operator.access_token}"}).json()
    assert "operator" in me["roles"]
    for path in ("services", "streams", "delivery"):
        assert hostile.api(operator, "GET", f"/api/v1/dashboard/{path}").status_code == 200
        refused = hostile.api(admin, "GET", f"/api/v1/dashboard/{path}")
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    assert "instances" in hostile.api(operator, "GET", "/api/v1/dashboard/services").json()

    deadline = time.monotonic() + 30
    while True:  # the runs are projected shortly after they end
        runs = hostile.api(admin, "GET", "/api/v1/dashboard/runs").json()["runs"]
        if any(r["id"] == admin.run_id for r in runs) or time.monotonic() > deadline:  # type: ignore[attr-defined]
            break
        await asyncio.sleep(0.3)
    assert [r["id"] for r in runs] == [admin.run_id]  # type: ignore[attr-defined]
    tenant_view = " ".join(
        hostile.api(admin, "GET", path).text
        for path in ("/api/v1/dashboard/runs", "/api/v1/dashboard/sla", "/api/v1/audit")
    )
    assert stranger.run_id not in tenant_view and stranger.tenant_id not in tenant_view  # type: ignore[attr-defined]
    for platform_name in ("APEX_EVT", "APEX_CMD", "orchestrator-run-start", "instance", "events_sent"):
        assert platform_name not in tenant_view

    invite = httpx.post(
        f"{hostile.auth}/auth/invites",
        json={"email": f"op-{uuid.uuid4().hex[:8]}@example.com", "role": "operator"},
        headers={"Authorization": f"Bearer {admin.access_token}"},
    )
    assert invite.status_code == 422, "an invite never grants the operator role"


async def test_events_and_sse_beyond_retention_come_from_the_archive_or_say_so(hostile: Platform) -> None:
    """Purges the event stream (retention): the last test of the hostile platform."""
    user = hostile.register()
    archive_only, to_erase = await publish_thread(hostile, user, 3), await publish_thread(hostile, user, 2)
    thread_id = await publish_thread(hostile, user, 10)
    original = [e["seq"] for e in events_of(hostile, user, thread_id, after_seq=0).json()["events"]]
    deadline = time.monotonic() + 60
    while [len(await archived_seqs(hostile, user, t)) for t in (thread_id, archive_only, to_erase)] != [
        10,
        3,
        2,
    ]:
        assert time.monotonic() < deadline, "the events were never archived"
        await asyncio.sleep(0.3)

    middle = original[5]
    nc = await nats.connect(hostile.recorded_env()["APEX_NATS_URL"], **hostile.nats_options())
    await nc.jetstream().purge_stream("APEX_EVT", seq=middle)  # retention took the first half
    await nc.close()

    persistence = psutil.Process(hostile.pid("persistence"))
    persistence.suspend()
    try:
        gap = events_of(hostile, user, thread_id, after_seq=0)
        assert gap.status_code == 410
        assert (gap.json()["error"]["code"], gap.json()["error"]["details"]["first_seq"]) == (
            "replay_incomplete",
            middle,
        )
        rest = events_of(hostile, user, thread_id, after_seq=middle - 1).json()["events"]
        assert [e["seq"] for e in rest] == original[5:]
        told = await sse(hostile, user, thread_id, 1 + len(original[5:]))
        assert (told[0]["event"], told[0]["code"], told[0]["first_seq"]) == (
            "error",
            "replay_incomplete",
            middle,
        )
        assert [e["seq"] for e in told[1:]] == original[5:], "told, then given what is still there"
    finally:
        persistence.resume()

    replayed = events_of(hostile, user, thread_id, after_seq=0).json()
    assert [e["seq"] for e in replayed["events"]] == original and replayed["head_seq"] == original[-1]
    assert [e["seq"] for e in await sse(hostile, user, thread_id, len(original))] == original

    # a thread whose events are all beyond retention is found by every endpoint
    assert [e["seq"] for e in events_of(hostile, user, archive_only, after_seq=0).json()["events"]] == (
        await archived_seqs(hostile, user, archive_only)
    )
    assert len(await sse(hostile, user, archive_only, 3)) == 3
    assert hostile.api(user, "GET", f"/api/v1/threads/{archive_only}").status_code == 200
    renamed = hostile.api(user, "PATCH", f"/api/v1/threads/{archive_only}", json={"title": "kept"})
    assert renamed.status_code == 202
    erased = hostile.api(user, "DELETE", f"/api/v1/threads/{to_erase}?erase=true")
    assert erased.status_code == 202
