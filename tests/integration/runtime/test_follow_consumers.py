"""Following a thread costs the stream one ordered consumer, for as long as the follow
lasts: a stopped follow deletes its consumer at once (a stream caps its consumers, and a
busy platform opens and closes several a second), and the event stream's cap is set
well above NATS's default of 1,000."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from nats.js.api import StreamConfig

from apex_cli.embedded import EmbeddedServer
from apex_contracts import ErrorCode, Unavailable, new_id, subjects
from apex_contracts.streams import APEX_EVT
from apex_runtime import Stored
from apex_runtime.bus import NatsBus


@pytest.fixture
async def bus(nats: EmbeddedServer) -> AsyncIterator[NatsBus]:
    bus = await NatsBus.connect(nats.url, "follow-consumers")
    await bus.ensure_topology()
    yield bus
    await bus.close()


async def _nothing(_stored: Stored) -> None:
    return None


async def test_a_stopped_follow_leaves_no_consumer_behind(bus: NatsBus) -> None:
    before = (await bus.stream_state(APEX_EVT.name)).consumers
    follows = []
    for _ in range(5):
        subject = subjects.thread_events(new_id("ten"), new_id("usr"), new_id("thr"))
        follows.append(await bus.follow(subject, _nothing, after_seq=0))
    assert (await bus.stream_state(APEX_EVT.name)).consumers == before + 5
    for follow in follows:
        await follow.stop()
    assert (await bus.stream_state(APEX_EVT.name)).consumers == before


async def test_the_event_stream_takes_more_consumers_than_nats_gives_by_default(bus: NatsBus) -> None:
    info = await bus.js.stream_info(APEX_EVT.name)
    assert info.config.max_consumers == APEX_EVT.max_consumers >= 10_000


async def test_a_follow_the_stream_refuses_is_a_typed_error(bus: NatsBus) -> None:
    """A stream at its consumer cap refuses another follow: the caller gets
    bus_unavailable (retryable), not the client library's error."""
    name = f"CAPPED_{new_id('thr')[4:]}"
    await bus.js.add_stream(StreamConfig(name=name, subjects=[f"{name.lower()}.>"], max_consumers=1))
    first = await bus.follow(f"{name.lower()}.a", _nothing, after_seq=0)
    try:
        with pytest.raises(Unavailable) as refused:
            await bus.follow(f"{name.lower()}.b", _nothing, after_seq=0)
        assert refused.value.code == ErrorCode.BUS_UNAVAILABLE and refused.value.retryable
    finally:
        await first.stop()
        await bus.js.delete_stream(name)
