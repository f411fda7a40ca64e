"""``events`` frames over the real platform: a subscription that asks for batches
(``max_batch``) gets the same events, in the same order, as one that does not, however
the gateway joins them, and a client dropped in the middle of a batched replay resumes
with exactly what it missed."""

from __future__ import annotations

import asyncio
from typing import Any

import nats
import orjson

from apex_contracts import AgentThinking, AgentThinkingData, Scope, new_id
from apex_contracts.frames import BATCH_BYTES, EventsFrame, event_frames, parse_server_frame
from tests.e2e.platform import Platform, User
from tests.e2e.wsclient import open_socket, recv, send

EVENTS = 600


async def _seed(platform: Platform, user: User, events: int) -> str:
    """A thread of ``events`` stored events, published straight to the log."""
    nc = await nats.connect(platform.recorded_env()["APEX_NATS_URL"], **platform.nats_options())
    scope = Scope(
        tenant_id=user.tenant_id, user_id=user.user_id, thread_id=new_id("thr"), run_id=new_id("run")
    )
    subject = f"apex.evt.{user.tenant_id}.{user.user_id}.{scope.thread_id}"
    js = nc.jetstream()
    for start in range(0, events, 100):
        await asyncio.gather(
            *(
                js.publish(subject, event.wire(), headers={"Nats-Msg-Id": event.id})
                for event in (
                    scope.make(
                        AgentThinking,
                        AgentThinkingData(agent="triage", step=1, text=f"thought {n} " + "x" * 200),
                        id=f"{scope.run_id}:1:t:{n}",
                    )
                    for n in range(start, min(events, start + 100))
                )
            )
        )
    await nc.close()
    return scope.thread_id


async def _read(
    platform: Platform,
    user: User,
    thread_id: str,
    *,
    after: int,
    max_batch: int,
    stop_after: int | None = None,
) -> tuple[list[dict[str, Any]], list[str]]:
    """The event frames a subscription gets up to the head (or until ``stop_after``
    events, then the socket is dropped), and the raw text of every frame."""
    ws = await open_socket(platform.ws_url, user.access_token, max_size=2**24)
    await recv(ws)
    await send(
        ws, {"type": "thread.subscribe", "thread_id": thread_id, "after_seq": after, "max_batch": max_batch}
    )
    subscribed = await recv(ws)
    assert subscribed["type"] == "thread.subscribed", subscribed
    events: list[dict[str, Any]] = []
    texts: list[str] = []
    while (not events or events[-1]["seq"] < subscribed["head_seq"]) and subscribed["head_seq"] > after:
        text = await asyncio.wait_for(ws.recv(), 10)
        assert isinstance(text, str)
        frame = orjson.loads(text)
        texts.append(text)
        events += event_frames(frame)
        if stop_after is not None and len(events) >= stop_after:
            ws.transport.abort()  # dropped mid-replay, not closed
            return events, texts
    await ws.close()
    return events, texts


async def test_batched_and_single_frames_carry_the_same_events_in_order(platform: Platform) -> None:
    user = platform.register()
    thread_id = await _seed(platform, user, EVENTS)
    single, single_texts = await _read(platform, user, thread_id, after=0, max_batch=1)
    batched, texts = await _read(platform, user, thread_id, after=0, max_batch=50)
    assert [(e["seq"], e["event"]["id"]) for e in batched] == [(e["seq"], e["event"]["id"]) for e in single]
    assert batched == single, "an event in an events frame is exactly its own event frame"
    assert len(single) == EVENTS and all('"type":"events"' not in t for t in single_texts)
    frames = [parse_server_frame(t) for t in texts]
    joined = [f for f in frames if isinstance(f, EventsFrame)]
    assert joined, "a 600-event replay is written in events frames"
    assert len(texts) < EVENTS / 5
    for frame in joined:
        assert frame.thread_id == thread_id and 1 < len(frame.events) <= 50
        assert all(e.thread_id == thread_id for e in frame.events)
    assert max(len(t) for t in texts) <= BATCH_BYTES + 200


async def test_a_client_dropped_mid_batched_replay_resumes_with_exactly_what_it_missed(
    platform: Platform,
) -> None:
    user = platform.register()
    thread_id = await _seed(platform, user, EVENTS)
    before, _ = await _read(platform, user, thread_id, after=0, max_batch=40, stop_after=130)
    last = before[-1]["seq"]
    after, _ = await _read(platform, user, thread_id, after=last, max_batch=40)
    full, _ = await _read(platform, user, thread_id, after=0, max_batch=1)
    union = before + after
    assert [e["seq"] for e in union] == [e["seq"] for e in full]
    assert len({e["event"]["id"] for e in union}) == len(union) == EVENTS
