"""The SSE sink: apex.v1 event frames become SSE events (``id`` = seq), gaps and failures
``error`` events; ``thread.subscribed`` has no SSE twin; a sink with no room ends the
stream with ``slow_consumer`` and drops what it held (the client resumes with
``Last-Event-ID``)."""

from __future__ import annotations

import asyncio

import orjson

from apex_contracts import ErrorCode, new_id
from apex_contracts.frames import ErrorFrame, ThreadSubscribed
from apex_gateway.sse import SseSink
from apex_gateway.ws.feeds import event_frame

THREAD = new_id("thr")


def _event(seq: int) -> str:
    return event_frame(THREAD, seq, {"type": "thread.renamed", "id": f"e{seq}", "tenant_id": "hidden"})


async def test_events_and_gaps_are_sse_messages_in_order() -> None:
    sink = SseSink(10, 0.05, asyncio.Event())
    sink.send(ThreadSubscribed(thread_id=THREAD, from_seq=0, head_seq=9))
    sink.push_event(_event(3))
    sink.send(
        ErrorFrame(
            code=ErrorCode.REPLAY_INCOMPLETE,
            message="gap",
            retryable=True,
            thread_id=THREAD,
            first_seq=7,
            gap_from=4,
            gap_to=6,
            ref="r",
        )
    )
    sink.push_event(_event(7))
    texts = [(await sink.out.get())[0] for _ in range(3)]
    assert len(sink.out) == 0
    head, name, data = texts[0].strip().split("\n")
    assert (head, name) == ("id: 3", "event: thread.renamed")
    body = orjson.loads(data.removeprefix("data: "))
    assert body == {"thread_id": THREAD, "seq": 3, "event": {"type": "thread.renamed", "id": "e3"}}
    name, data = texts[1].strip().split("\n")
    assert name == "event: error"
    gap = orjson.loads(data.removeprefix("data: "))
    assert gap == {
        "code": "replay_incomplete",
        "message": "gap",
        "retryable": True,
        "thread_id": THREAD,
        "first_seq": 7,
        "gap_from": 4,
        "gap_to": 6,
    }
    assert texts[2].startswith("id: 7\n")


async def test_a_full_sink_ends_the_stream_with_slow_consumer() -> None:
    end = asyncio.Event()
    sink = SseSink(2, 0.05, end)
    sink.push_event(_event(1))
    sink.push_event(_event(2))
    assert not await sink.room()  # a replay waited for room in vain
    assert end.is_set() and len(sink.out) == 0
    assert sink.last is not None and b'"code":"slow_consumer"' in sink.last
    sink.push_event(_event(3))  # written after the dropped ones, it would hide a gap
    assert len(sink.out) == 0


async def test_a_dropped_subscription_ends_after_what_was_queued() -> None:
    end = asyncio.Event()
    sink = SseSink(4, 0.05, end)
    sink.push_event(_event(1))
    sink.drop_subscription(THREAD)
    assert end.is_set() and sink.last is None and len(sink.out) == 1
