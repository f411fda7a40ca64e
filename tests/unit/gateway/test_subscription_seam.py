"""The replay/live seam of a thread subscription, with fakes of its narrow ports (no
socket, no server, no bus): the sink sees each seq once, in order, whether it came from
the archive, the stream's replay or the live feed; what nobody holds is named with
``replay_incomplete``; a replay that ends short of the head is read again, never skipped."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apex_contracts import ApexError, ErrorCode, Unavailable, new_id, subjects
from apex_contracts.envelope import Model
from apex_contracts.frames import ErrorFrame, ThreadSubscribed
from apex_gateway.history import Archived, archived_events
from apex_gateway.tokens import Principal
from apex_gateway.ws.feeds import event_frame
from apex_gateway.ws.ports import Listener
from apex_gateway.ws.subscription import SubscriptionPorts, ThreadSubscription

WHO = Principal(
    user_id=new_id("usr"), tenant_id=new_id("ten"), session_id=new_id("ses"), roles=(), expires_at=0
)
THREAD = new_id("thr")
SUBJECT = subjects.thread_events(WHO.tenant_id, WHO.user_id, THREAD)


def _event(seq: int) -> dict[str, Any]:
    return {"type": "run.progress", "id": f"evt_{seq}", "tenant_id": "ten_a", "data": {"n": seq}}


class FakeLog:
    """``ThreadHistory``: the stream keeps seqs >= ``first_kept``; the archive holds the
    seqs before it except ``lost`` (named as gaps), or does not answer at all."""

    def __init__(
        self, seqs: list[int], first_kept: int = 1, lost: list[tuple[int, int]] | None = None
    ) -> None:
        self.stored: list[int] = []
        self.first = first_kept
        self.lost = lost or []
        self.archive: list[int] = []
        self.feeds: FakeFeeds | None = None
        for seq in seqs:
            self.store(seq)
        self.reads: list[tuple[int, int]] = []
        self.short_reads = 0  # reads that end before the seq they were asked through
        self.on_first_kept: Callable[[], None] = lambda: None  # runs while the feed is joined

    def store(self, seq: int) -> None:
        if seq < self.first:
            if not any(lo <= seq <= hi for lo, hi in self.lost):
                self.archive.append(seq)
            return
        self.stored.append(seq)
        if self.feeds is not None:
            self.feeds.deliver(seq)

    async def first_kept(self) -> int:
        self.on_first_kept()
        return self.first

    async def head(self, subject: str, *, leader: bool = False) -> int:
        raise AssertionError("a subscription reads through where its feed starts, not a head of its own")

    async def read(
        self, subject: str, *, after_seq: int, through_seq: int = 0, batch: int = 1000
    ) -> AsyncIterator[tuple[int, bytes]]:
        self.reads.append((after_seq, through_seq))
        short = self.short_reads > 0
        self.short_reads -= 1
        i = 0
        while i < len(self.stored):  # the list grows while it is read: a live stream
            seq = self.stored[i]
            i += 1
            if seq <= after_seq:
                continue
            if short and seq > through_seq - 1:
                return  # a replica that lost its tail
            yield seq, orjson.dumps(_event(seq))

    async def archived(
        self, who: Principal, thread_id: str, after_seq: int, first_kept: int, limit: int | None = None
    ) -> Archived:
        events = [(s, _event(s)) for s in self.archive if after_seq < s < first_kept]
        gaps = [(max(lo, after_seq + 1), hi) for lo, hi in self.lost if hi > after_seq]
        return Archived(events, gaps)


class FakeFeeds:
    """``LiveFeeds``: what is stored after ``join`` reaches the listener, in order."""

    def __init__(self, log: FakeLog) -> None:
        self.listeners: set[Listener] = set()
        self.log = log
        self.start_lag = 0  # the feed starts this many events behind the head (a leader just elected)
        log.feeds = self

    def deliver(self, seq: int) -> None:
        frame = event_frame(THREAD, seq, _event(seq))
        for listener in list(self.listeners):
            listener.live(seq, frame, None)

    async def join(self, subject: str, thread_id: str, listener: Listener) -> int:
        self.listeners.add(listener)
        known = self.log.stored[: len(self.log.stored) - self.start_lag]
        for seq in self.log.stored[len(known) :]:  # an ordered consumer hands over what follows its start
            listener.live(seq, event_frame(THREAD, seq, _event(seq)), None)
        return known[-1] if known else 0

    async def leave(self, subject: str, listener: Listener) -> None:
        self.listeners.discard(listener)


class FakeSink:
    """``EventSink``: records what a client would read. ``pace`` runs before each replayed
    frame is offered (where the real sink waits for room): live events arrive then."""

    def __init__(self, pace: Callable[[], None] = lambda: None) -> None:
        self.frames: list[Model | int] = []
        self.dropped: list[str] = []
        self.groups: set[tuple[str, int] | None] = set()
        self.pace = pace

    def send(self, frame: Model) -> None:
        self.frames.append(frame)

    def push_event(
        self, frame: str, occurred_at: float | None = None, group: tuple[str, int] | None = None
    ) -> None:
        self.frames.append(orjson.loads(frame)["seq"])
        self.groups.add(group)

    async def room(self) -> bool:
        self.pace()
        return True

    def drop_subscription(self, thread_id: str) -> None:
        self.dropped.append(thread_id)

    @property
    def seqs(self) -> list[int]:
        return [f for f in self.frames if isinstance(f, int)]

    def errors(self) -> list[ErrorFrame]:
        return [f for f in self.frames if isinstance(f, ErrorFrame)]


class Figures:
    def __init__(self) -> None:
        self.counts = {"replayed": 0, "resent": 0, "resynced": 0}

    def replayed(self, count: int = 1) -> None:
        self.counts["replayed"] += count

    def resent(self) -> None:
        self.counts["resent"] += 1

    def resynced(self) -> None:
        self.counts["resynced"] += 1

    def ack_waited(self, seconds: float) -> None:
        pass


def _subscription(
    log: FakeLog, sink: FakeSink, after: int = 0, max_batch: int = 1
) -> tuple[ThreadSubscription, Figures]:
    figures = Figures()
    ports = SubscriptionPorts(log, FakeFeeds(log), figures)
    return ThreadSubscription(sink, ports, WHO, THREAD, SUBJECT, after, max_batch), figures


async def test_a_subscription_that_asked_for_batches_offers_its_frames_in_its_thread_group() -> None:
    for max_batch, group in ((1, None), (50, (THREAD, 50))):
        log = FakeLog([1, 2, 3])
        sink = FakeSink()
        await _subscription(log, sink, max_batch=max_batch)[0].start()
        log.store(4)  # live
        assert (sink.seqs, sink.groups) == ([1, 2, 3, 4], {group})


async def test_overlap_between_replay_and_live_is_dropped_by_seq() -> None:
    log = FakeLog([2, 4, 6])
    # stored after the feed was joined, before the replay is read: in both the replay (a
    # read goes on past the seq it was asked through) and the live feed (held back while
    # the replay is sent)
    log.on_first_kept = lambda: log.store(8)
    live = [10, 12]
    sink = FakeSink(pace=lambda: log.store(live.pop(0)) if live else None)
    sub, figures = _subscription(log, sink)
    await sub.start(ref="r1")
    log.store(14)
    assert isinstance(sink.frames[0], ThreadSubscribed) and sink.frames[0].head_seq == 6
    assert sink.seqs == [2, 4, 6, 8, 10, 12, 14]
    assert figures.counts["replayed"] >= 4  # the replay read on while the stream grew


async def test_a_gap_between_replay_end_and_first_live_event_is_refilled() -> None:
    log = FakeLog([2, 4, 6, 8])
    log.short_reads = 1  # the first read ends at 6, short of the head 8
    sink = FakeSink(pace=lambda: log.store(10) if log.stored[-1] == 8 else None)
    sub, _ = _subscription(log, sink)
    await sub.start()
    assert sink.seqs == [2, 4, 6, 8, 10]
    assert log.reads == [(0, 8), (6, 8)]


async def test_a_feed_that_starts_behind_the_head_is_read_through_never_skipped() -> None:
    """A new feed starts after the thread's head as a stream leader just elected knows it,
    which can lag what is stored (seen in the lame-duck test): the feed hands over what
    follows, the replay reads through where it started, the overlap is dropped by seq."""
    log = FakeLog([2, 4, 6, 8])
    sink = FakeSink()
    sub, _ = _subscription(log, sink)
    sub.ports.feeds.start_lag = 2  # type: ignore[attr-defined]  # the feed starts after 4
    await sub.start()
    log.store(10)
    assert sink.seqs == [2, 4, 6, 8, 10]


async def test_a_subscription_joined_before_its_message_was_stored_reads_nothing() -> None:
    """``message.send``: the feed is joined while the message is stored, so the message's
    event and what follows come live; no replay read waits behind the send."""
    log = FakeLog([2, 4])
    sink = FakeSink()
    sub, _ = _subscription(log, sink)
    await sub.join()
    log.store(6)  # the message
    log.store(8)
    sub.resume_after(5, stored_through=6)
    await sub.start(ref="send")
    log.store(10)
    (subscribed, *_) = sink.frames
    assert isinstance(subscribed, ThreadSubscribed)
    assert (subscribed.from_seq, subscribed.head_seq, subscribed.ref) == (5, 6, "send")
    assert sink.seqs == [6, 8, 10] and log.reads == []


async def test_a_gap_that_cannot_be_refilled_is_unavailable_never_skipped() -> None:
    log = FakeLog([2, 4, 6, 8])
    log.short_reads = 2
    sink = FakeSink()
    sub, _ = _subscription(log, sink)
    with pytest.raises(Unavailable):
        await sub.start()
    log.store(10)  # held back: the client is told to subscribe again instead
    assert sink.seqs == [2, 4, 6]
    await sub.stop()


async def test_archive_fills_what_the_stream_no_longer_holds() -> None:
    log = FakeLog([2, 4, 6, 8, 10], first_kept=7)
    sink = FakeSink()
    sub, figures = _subscription(log, sink, after=2)
    await sub.start()
    log.store(12)
    assert sink.seqs == [4, 6, 8, 10, 12]
    assert not sink.errors()
    assert figures.counts["replayed"] == 4


async def test_replay_incomplete_where_neither_stream_nor_archive_holds_the_range() -> None:
    log = FakeLog([2, 4, 6, 8, 10], first_kept=7, lost=[(3, 6)])
    sink = FakeSink()
    sub, _ = _subscription(log, sink)
    await sub.start(ref="r2")
    frames = [f if isinstance(f, int) else getattr(f, "code", "subscribed") for f in sink.frames]
    assert frames == ["subscribed", 2, ErrorCode.REPLAY_INCOMPLETE, 8, 10]
    (gap,) = sink.errors()
    assert (gap.gap_from, gap.gap_to, gap.first_seq, gap.ref) == (3, 6, 7, "r2")


class _Bus:
    """The one call ``archived_events`` makes of the bus: the archive query."""

    async def query(self, name: str, request: Any, reply_type: Any, **_: Any) -> Any:
        raise Unavailable("persistence is down", code=ErrorCode.SERVICE_UNAVAILABLE)


async def test_an_archive_that_does_not_answer_is_a_gap_over_the_whole_window() -> None:
    archive = await archived_events(_Bus(), WHO, THREAD, 2, 9)  # type: ignore[arg-type]
    assert archive.in_order() == [(3, 8)]
    assert issubclass(Unavailable, ApexError)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.integers(1, 4), min_size=1, max_size=30).map(
        lambda steps: [sum(steps[: i + 1]) for i in range(len(steps))]
    ),
    st.data(),
)
async def test_any_interleaving_of_replay_and_live_gives_each_seq_once_in_order(
    seqs: list[int], data: st.DataObject
) -> None:
    """Events stored before the feed was joined, while it is joined, and at random points
    of the replay (or after it); the feed may start behind the head; the stream keeps
    from a random seq, the archive holds the rest; the first read may end short of where
    it was asked through: the sink sees exactly the events after ``after_seq``, once, in
    order."""
    joined = data.draw(st.integers(0, len(seqs)), label="stored before join")
    at_head = data.draw(st.integers(joined, len(seqs)), label="stored while joining")
    first_kept = data.draw(st.sampled_from([1, *seqs[: joined + 1]]), label="first_kept")
    after = data.draw(st.sampled_from([0, *seqs]), label="after_seq")
    bursts = data.draw(st.lists(st.integers(0, 3), max_size=len(seqs)), label="live per replay step")
    later = iter(seqs[at_head:])
    burst = iter(bursts)

    def store(n: int) -> None:
        for _ in range(n):
            seq = next(later, None)
            if seq is not None:
                log.store(seq)

    log = FakeLog(seqs[:joined], first_kept=first_kept)
    log.short_reads = data.draw(st.integers(0, 1), label="first read ends short")
    log.on_first_kept = lambda: [log.store(s) for s in seqs[joined:at_head]] and None
    sink = FakeSink(pace=lambda: store(next(burst, 0)))
    sub, _ = _subscription(log, sink, after=after)
    sub.ports.feeds.start_lag = data.draw(st.integers(0, 2), label="feed starts behind")  # type: ignore[attr-defined]
    await sub.start()
    store(len(seqs))
    assert sink.seqs == [s for s in seqs if s > after]
    assert not sink.errors()
