"""Guaranteed delivery over the real platform: resume after a dropped socket, early frames,
acks and cursors, several devices, the bad-input catalogue, limits and fallbacks."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
import redis.asyncio as aioredis
from websockets.exceptions import ConnectionClosed

from apex_client import ApexSocket
from tests.e2e.platform import Platform, User
from tests.e2e.wsclient import open_socket, recv, send, until_terminal

QUESTION = "Where is my LLM spend going?"


async def _run(platform: Platform, user: User) -> tuple[str, str, list[dict[str, Any]]]:
    """A whole run on a fresh socket: (thread_id, run_id, event frames)."""
    ws = await open_socket(platform.ws_url, user.access_token)
    await recv(ws)
    await send(ws, {"type": "message.send", "client_msg_id": uuid.uuid4().hex, "text": QUESTION})
    accepted = await recv(ws)
    frames = await until_terminal(ws, accepted["run_id"])
    await ws.close()
    return accepted["thread_id"], accepted["run_id"], [f for f in frames if f["type"] == "event"]


async def _replay(
    platform: Platform, user: User, thread_id: str, after: int | str = 0
) -> list[dict[str, Any]]:
    ws = await open_socket(platform.ws_url, user.access_token)
    await recv(ws)
    await send(ws, {"type": "thread.subscribe", "thread_id": thread_id, "after_seq": after})
    subscribed = await recv(ws)
    assert subscribed["type"] == "thread.subscribed"
    events: list[dict[str, Any]] = []
    while not events or events[-1]["seq"] < subscribed["head_seq"]:
        frame = await recv(ws)
        if frame["type"] == "event":
            events.append(frame)
        if subscribed["head_seq"] <= (after if isinstance(after, int) else 0):
            break
    await ws.close()
    return events


async def test_a_dropped_socket_resumes_with_exactly_what_it_missed(platform: Platform) -> None:
    user = platform.register()
    ws = await open_socket(platform.ws_url, user.access_token)
    await recv(ws)
    await send(ws, {"type": "message.send", "client_msg_id": uuid.uuid4().hex, "text": QUESTION})
    accepted = await recv(ws)
    seen: list[dict[str, Any]] = []
    while len([f for f in seen if f["type"] == "event"]) < 3:
        seen.append(await recv(ws))
    ws.transport.abort()  # a dropped connection, not a close
    last = max(f["seq"] for f in seen if f["type"] == "event")

    ws2 = await open_socket(platform.ws_url, user.access_token)
    await recv(ws2)
    await send(ws2, {"type": "thread.subscribe", "thread_id": accepted["thread_id"], "after_seq": last})
    rest = await until_terminal(ws2, accepted["run_id"])
    await ws2.close()
    union = [f for f in seen + rest if f["type"] == "event"]
    full = await _replay(platform, user, accepted["thread_id"])
    assert [f["seq"] for f in union] == [f["seq"] for f in full]
    assert [f["event"]["id"] for f in union] == [f["event"]["id"] for f in full]


async def test_frames_sent_before_session_ready_are_answered_after_it(platform: Platform) -> None:
    users = [platform.register() for _ in range(25)]

    async def connect(user: User, n: int) -> str:
        ws = await open_socket(platform.ws_url, user.access_token, open_timeout=60)
        await send(ws, {"type": "ping", "ref": f"early-{n}"})
        first = await recv(ws, 60)
        second = await recv(ws, 60)
        await ws.close()
        assert (first["type"], second["type"], second["ref"]) == ("session.ready", "pong", f"early-{n}")
        return "ok"

    results = await asyncio.gather(
        *(connect(users[n % len(users)], n) for n in range(500)), return_exceptions=True
    )
    failures = [r for r in results if r != "ok"]
    assert failures == [], failures[:3]


async def test_acks_become_the_cursor_and_devices_each_get_everything(platform: Platform) -> None:
    user = platform.register()
    phone, laptop = [await open_socket(platform.ws_url, user.access_token) for _ in range(2)]
    await recv(phone)
    await recv(laptop)
    await send(phone, {"type": "message.send", "client_msg_id": uuid.uuid4().hex, "text": QUESTION})
    accepted = await recv(phone)
    await send(laptop, {"type": "thread.subscribe", "thread_id": accepted["thread_id"], "after_seq": 0})
    on_phone = [f for f in await until_terminal(phone, accepted["run_id"]) if f["type"] == "event"]
    on_laptop = [f for f in await until_terminal(laptop, accepted["run_id"]) if f["type"] == "event"]
    assert [f["seq"] for f in on_phone] == [f["seq"] for f in on_laptop]
    middle = on_phone[len(on_phone) // 2]["seq"]
    await send(phone, {"type": "event.ack", "thread_id": accepted["thread_id"], "seq": middle})
    await send(phone, {"type": "event.ack", "thread_id": accepted["thread_id"], "seq": 1})  # never backwards
    await send(phone, {"type": "ping", "ref": "sync"})
    while (await recv(phone))["type"] != "pong":
        pass
    await phone.close()
    await laptop.close()
    resumed = await _replay(platform, user, accepted["thread_id"], after="cursor")
    assert resumed[0]["seq"] == next(f["seq"] for f in on_phone if f["seq"] > middle)


async def _stored_cursor(platform: Platform, user: User, thread_id: str) -> int:
    conn = await asyncpg.connect(platform.recorded_env()["APEX_POSTGRES_DSN"])
    try:
        seq = await conn.fetchval(
            "SELECT seq FROM apex.delivery_cursors WHERE tenant_id = $1 AND user_id = $2 AND thread_id = $3",
            user.tenant_id,
            user.user_id,
            thread_id,
        )
    finally:
        await conn.close()
    return int(seq or 0)


async def test_the_cursor_survives_losing_its_redis_key(platform: Platform) -> None:
    user = platform.register()
    thread_id, _run_id, events = await _run(platform, user)
    acked = events[len(events) // 2]["seq"]
    ws = await open_socket(platform.ws_url, user.access_token)
    await recv(ws)
    await send(ws, {"type": "thread.subscribe", "thread_id": thread_id, "after_seq": acked - 1})
    while (await recv(ws)).get("seq") != acked:  # an ack covers only what was sent
        pass
    await send(ws, {"type": "event.ack", "thread_id": thread_id, "seq": acked})
    await send(ws, {"type": "ping", "ref": "sync"})
    while (await recv(ws))["type"] != "pong":
        pass
    await ws.close()
    for _ in range(150):  # flushed to persistence about once a second
        if await _stored_cursor(platform, user, thread_id) == acked:
            break
        await asyncio.sleep(0.2)
    else:
        raise AssertionError("the acknowledged cursor did not reach persistence")

    redis = aioredis.from_url(platform.recorded_env()["APEX_REDIS_URL"])
    key = f"apex:{user.tenant_id}:cursor:{user.user_id}:{thread_id}"
    try:
        assert await redis.delete(key) == 1  # as after a Redis restart without persistence
        resumed = await _replay(platform, user, thread_id, after="cursor")
        assert int(await redis.get(key) or 0) == acked  # restored into Redis as well
    finally:
        await redis.aclose()
    expected = [(f["seq"], f["event"]["id"]) for f in events if f["seq"] > acked]
    assert [(f["seq"], f["event"]["id"]) for f in resumed] == expected


async def test_the_same_client_msg_id_is_the_same_run(platform: Platform) -> None:
    user = platform.register()
    ws = await open_socket(platform.ws_url, user.access_token)
    await recv(ws)
    frame = {"type": "message.send", "client_msg_id": "dup-1", "text": QUESTION}
    await send(ws, frame)
    first = await recv(ws)
    await send(ws, frame)
    answers = []
    while len(answers) < 1:
        incoming = await recv(ws)
        if incoming["type"] == "message.accepted":
            answers.append(incoming)
    assert (answers[0]["run_id"], answers[0]["thread_id"]) == (first["run_id"], first["thread_id"])
    await until_terminal(ws, first["run_id"])
    await ws.close()
    events = await _replay(platform, user, first["thread_id"])
    assert [e["event"]["type"] for e in events].count("run.accepted") == 1


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", "invalid_json"),
        ('{"type": "launch.missiles"}', "unknown_type"),
        ('{"type": "message.send", "text": "no id"}', "invalid_frame"),
        ('{"type": "message.send", "client_msg_id": "x", "text": 42}', "invalid_frame"),
        ('{"type": "thread.subscribe", "thread_id": "thr_../../etc"}', "invalid_id"),
        ('{"type": "run.cancel", "run_id": "run_01J9ZZZZZZZZZZZZZZZZZZZZZZ"}', "not_found"),
    ],
)
async def test_bad_input_is_answered_and_the_connection_stays_open(
    platform: Platform, frame: str, code: str
) -> None:
    user = platform.register()
    ws = await open_socket(platform.ws_url, user.access_token)
    await recv(ws)
    await ws.send(frame)
    error = await recv(ws)
    assert (error["type"], error["code"]) == ("error", code)
    assert isinstance(error["message"], str) and error["message"]
    await send(ws, {"type": "ping", "ref": "still-open"})
    assert (await recv(ws))["ref"] == "still-open"
    await ws.close()


async def test_another_users_thread_is_not_found(platform: Platform) -> None:
    owner, stranger = platform.register(), platform.register()
    thread_id, _run_id, _ = await _run(platform, owner)
    ws = await open_socket(platform.ws_url, stranger.access_token)
    await recv(ws)
    await send(ws, {"type": "thread.subscribe", "thread_id": thread_id, "after_seq": 0, "ref": "probe"})
    error = await recv(ws)
    assert (error["code"], error["ref"]) == ("not_found", "probe")
    await send(
        ws, {"type": "message.send", "client_msg_id": uuid.uuid4().hex, "text": "hi", "thread_id": thread_id}
    )
    assert (await recv(ws))["code"] == "not_found"
    await ws.close()


async def test_a_frame_over_64_kib_closes_with_1009(platform: Platform) -> None:
    user = platform.register()
    ws = await open_socket(platform.ws_url, user.access_token)
    await recv(ws)
    await ws.send(orjson.dumps({"type": "ping", "ref": "x" * 70_000}).decode())
    with pytest.raises(ConnectionClosed) as closed:
        await recv(ws)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


async def test_too_many_frames_are_rate_limited_with_a_wait(platform: Platform) -> None:
    """Past the burst a flood is told once per window (rate_limited with retry_after_ms);
    the rest of the window is not answered at all, so answers cannot flood either."""
    user = platform.register()
    ws = await open_socket(platform.ws_url, user.access_token)
    await recv(ws)
    for n in range(200):
        await send(ws, {"type": "ping", "ref": str(n)})
    limited: list[dict[str, Any]] = []
    pongs = 0
    while True:
        try:
            frame = await recv(ws, timeout=3)
        except TimeoutError:
            break
        if frame["type"] == "error":
            limited.append(frame)
        else:
            pongs += 1
    assert limited and all(f["code"] == "rate_limited" and f["retry_after_ms"] > 0 for f in limited)
    assert pongs + len(limited) < 200, "every refused frame was answered: the answers are not limited"
    await asyncio.sleep(max(f["retry_after_ms"] for f in limited) / 1000)
    await send(ws, {"type": "ping", "ref": "after"})
    assert (await recv(ws))["ref"] == "after", "after the window the connection answers again"
    await ws.close()


async def test_a_ticket_works_once(platform: Platform) -> None:
    user = platform.register()
    ticket = platform.api(user, "POST", "/api/v1/ws-ticket").json()["ticket"]
    ws = await open_socket(f"{platform.ws_url}?ticket={ticket}", None)
    assert (await recv(ws))["user_id"] == user.user_id
    await ws.close()
    again = await open_socket(f"{platform.ws_url}?ticket={ticket}", None)
    with pytest.raises(ConnectionClosed) as closed:
        await recv(again)
    assert closed.value.rcvd is not None and (closed.value.rcvd.code, closed.value.rcvd.reason) == (
        4401,
        "token_invalid",
    )


async def test_http_and_sse_fallbacks_have_the_same_events(platform: Platform) -> None:
    user = platform.register()
    thread_id, _run_id, ws_events = await _run(platform, user)
    expected = [(f["seq"], f["event"]["id"]) for f in ws_events]
    first_seq = ws_events[0]["seq"]

    paged: list[tuple[int, str]] = []
    after = first_seq - 1
    while True:
        page = platform.api(
            user, "GET", f"/api/v1/threads/{thread_id}/events?after_seq={after}&limit=5"
        ).json()
        paged += [(e["seq"], e["event"]["id"]) for e in page["events"]]
        after = page["next_after_seq"]
        if not page["more"]:
            break
    assert paged == expected

    resume_after = expected[4][0]
    got: list[tuple[int, str]] = []
    headers = {"Authorization": f"Bearer {user.access_token}", "Last-Event-ID": str(resume_after)}
    async with (
        httpx.AsyncClient(timeout=30) as http,
        http.stream(
            "GET", f"{platform.gateway}/api/v1/threads/{thread_id}/stream", headers=headers
        ) as response,
    ):
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                body = orjson.loads(line[6:])
                got.append((body["seq"], body["event"]["id"]))
                if len(got) == len(expected) - 5:
                    break
    assert got == expected[5:]


async def test_the_client_helper_resumes_across_drops(platform: Platform) -> None:
    user = platform.register()
    async with ApexSocket(platform.ws_url, user.access_token) as socket:
        await socket.send({"type": "message.send", "client_msg_id": uuid.uuid4().hex, "text": QUESTION})
        events: list[dict[str, Any]] = []
        dropped = False
        async for frame in socket.frames():
            if frame["type"] != "event":
                continue
            events.append(frame)
            if len(events) == 4 and not dropped:
                dropped = True
                socket._ws.transport.abort()  # type: ignore[union-attr]
            if frame["event"]["type"] in ("run.completed", "run.failed"):
                break
        thread_id = events[0]["thread_id"]
    full = await _replay(platform, user, thread_id)
    assert [e["seq"] for e in events] == [e["seq"] for e in full]
    assert socket.reconnects >= 1
