"""The gateway's delivery core on a real NATS, through the Bus port only: a thread
subscription built from its production ports (``ThreadLog``, ``ThreadFeeds`` on
``Bus.follow``) gives each seq once, in order, across the replay and the live feed;
an SSE sink writes the same; ``message.send`` joins the feed while it stores the
message; the dashboard's stream figures come through ``request``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from functools import partial
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from nats.aio.msg import Msg

from apex_contracts import NotFound, Scope, ThreadRenamed, ThreadRenamedData, new_id, subjects
from apex_contracts.envelope import Model
from apex_contracts.frames import MessageAccepted, SocketMessageSend, ThreadSubscribed
from apex_contracts.queries import Q_EVENTS_ARCHIVE, EventsPage, QueryReply
from apex_contracts.streams import APEX_EVT
from apex_gateway.dashboard.streams import streams_view
from apex_gateway.history import ThreadLog
from apex_gateway.messages import MessageService
from apex_gateway.sse import SseSink
from apex_gateway.tokens import Principal
from apex_gateway.ws.acks import CursorWrites
from apex_gateway.ws.dispatch import on_message_send
from apex_gateway.ws.feeds import ThreadFeeds
from apex_gateway.ws.outbox import Group
from apex_gateway.ws.subscription import SubscriptionPorts, ThreadSubscription
from apex_runtime import Bus


@pytest.fixture
async def bus(server_factory: Any) -> AsyncIterator[Bus]:
    connected = await Bus.connect(server_factory("nats").url, "gateway-on-the-bus")
    await connected.ensure_topology()
    yield connected
    await connected.close()


class Figures:
    def replayed(self, count: int = 1) -> None: ...
    def resent(self) -> None: ...
    def resynced(self) -> None: ...
    def ack_waited(self, seconds: float) -> None: ...


class Sink:
    def __init__(self) -> None:
        self.seqs: list[int] = []
        self.frames: list[Model] = []

    def send(self, frame: Model) -> None:
        self.frames.append(frame)

    def push_event(self, frame: str, occurred_at: float | None = None, group: Group | None = None) -> None:
        self.seqs.append(orjson.loads(frame)["seq"])

    async def room(self) -> bool:
        return True

    def drop_subscription(self, thread_id: str) -> None:
        raise AssertionError("no resync expected")


async def _publish(bus: Bus, scope: Scope, n: int) -> list[int]:
    return [
        await bus.publish_event(
            scope.make(ThreadRenamed, ThreadRenamedData(title=f"step {i}"), id=new_id("evt"))
        )
        for i in range(n)
    ]


async def _until(check: Any, timeout_s: float = 10.0) -> None:
    for _ in range(int(timeout_s / 0.02)):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("not delivered in time")


async def test_replay_then_live_on_a_real_stream_each_seq_once_in_order(bus: Bus) -> None:
    who = Principal(new_id("usr"), new_id("ten"), new_id("ses"), (), 0)
    scope = Scope(tenant_id=who.tenant_id, user_id=who.user_id, thread_id=new_id("thr"), run_id=new_id("run"))
    subject = subjects.thread_events(who.tenant_id, who.user_id, scope.thread_id)
    stored = await _publish(bus, scope, 5)
    history = ThreadLog(bus)
    feeds = ThreadFeeds(bus.follow, partial(history.head, leader=True))
    ports = SubscriptionPorts(history, feeds, Figures())
    sink, sse = Sink(), SseSink(100, 1.0, asyncio.Event())
    socket_sub = ThreadSubscription(sink, ports, who, scope.thread_id, subject, stored[1])
    sse_sub = ThreadSubscription(sse, ports, who, scope.thread_id, subject, 0)
    # live events while both replay: the overlap is dropped by seq
    publishing = asyncio.ensure_future(_publish(bus, scope, 5))
    await asyncio.gather(socket_sub.start(), sse_sub.start())
    stored += await publishing
    stored += await _publish(bus, scope, 3)
    await _until(lambda: len(sink.seqs) == len(stored) - 2 and len(sse.out) == len(stored))
    assert sink.seqs == stored[2:]
    assert len(feeds) == 1  # one follow of the thread for both subscribers
    written = [(await sse.out.get())[0] for _ in stored]
    assert [int(text.split("\n")[0].removeprefix("id: ")) for text in written] == stored
    assert all("\nevent: thread.renamed\n" in text for text in written)
    await socket_sub.stop()
    await sse_sub.stop()
    assert len(feeds) == 0


async def test_an_idle_thread_replays_while_other_threads_write(bus: Bus) -> None:
    """A new feed of a thread with no run going, the stream's head on other threads: the
    replay reads through the thread's own last event, never waits for one that may not
    come (it used to read through the stream's head: 15 s, then bus_unavailable)."""
    who = Principal(new_id("usr"), new_id("ten"), new_id("ses"), (), 0)
    idle = Scope(tenant_id=who.tenant_id, user_id=who.user_id, thread_id=new_id("thr"), run_id=new_id("run"))
    busy = Scope(tenant_id=who.tenant_id, user_id=who.user_id, thread_id=new_id("thr"), run_id=new_id("run"))
    stored = await _publish(bus, idle, 3)
    await _publish(bus, busy, 4)
    history = ThreadLog(bus)
    feeds = ThreadFeeds(bus.follow, partial(history.head, leader=True))
    ports = SubscriptionPorts(history, feeds, Figures())
    subject = subjects.thread_events(who.tenant_id, who.user_id, idle.thread_id)
    sink = Sink()
    subscription = ThreadSubscription(sink, ports, who, idle.thread_id, subject, 0)
    await subscription.start()
    assert sink.seqs == stored
    assert [frame.type for frame in sink.frames] == ["thread.subscribed"]
    stored += await _publish(bus, idle, 2)  # and the live feed goes on from there
    await _until(lambda: sink.seqs == stored)
    await subscription.stop()


async def test_stream_figures_come_through_the_port(bus: Bus) -> None:
    view = await streams_view(bus)
    evt = next(s for s in view["streams"] if s["name"] == APEX_EVT.name)
    assert "error" not in evt and evt["replicas"] == 1 and evt["last_seq"] >= evt["first_seq"] - 1
    assert view["consumers"]
    assert all("error" in c or "pending" in c for c in view["consumers"])


class Socket(Sink):
    """What ``dispatch`` uses of a connection: its principal, subscriptions and services,
    and the sink its subscriptions write to."""

    def __init__(self, who: Principal, bus: Bus, feeds: ThreadFeeds) -> None:
        super().__init__()
        self.principal = who
        self.subscriptions: dict[str, ThreadSubscription] = {}
        ports = SubscriptionPorts(ThreadLog(bus), feeds, Figures())
        self.services = SimpleNamespace(messages=MessageService(bus), subscriptions=ports)
        self.fresh: list[str] = []

        async def advance(thread_id: str, seq: int) -> None: ...

        async def start(thread_id: str) -> None:
            self.fresh.append(thread_id)

        self.acks = CursorWrites(advance, lambda exc, ref: None, start)


async def test_a_send_joins_the_feed_while_its_message_is_stored(bus: Bus) -> None:
    """``message.send`` subscribes from the message's own event, the frames in protocol
    order; a send that fails leaves no feed behind; a retried send whose run is on another
    thread than the one predicted subscribes to the run's thread."""
    who = Principal(new_id("usr"), new_id("ten"), new_id("ses"), (), 0)
    history = ThreadLog(bus)
    feeds = ThreadFeeds(bus.follow, partial(history.head, leader=True))
    socket = Socket(who, bus, feeds)
    await on_message_send(socket, SocketMessageSend(client_msg_id="c1", text="hello", ref="r1"))  # type: ignore[arg-type]
    accepted, subscribed = socket.frames
    assert isinstance(accepted, MessageAccepted) and isinstance(subscribed, ThreadSubscribed)
    thread = accepted.thread_id
    subject = subjects.thread_events(who.tenant_id, who.user_id, thread)
    first = await history.head(subject, leader=True)
    assert (subscribed.thread_id, subscribed.ref, subscribed.from_seq) == (thread, "r1", first - 1)
    assert subscribed.head_seq >= first
    await _until(lambda: socket.seqs[:1] == [first])
    assert list(socket.subscriptions) == [thread] and len(feeds) == 1
    await socket.acks.settled()
    await asyncio.sleep(0)
    # a cursor starts at 0 without a read only for a thread that had no event at the join
    assert socket.fresh == ([thread] if socket.subscriptions[thread].joined_at == 0 else [])

    async def empty_archive(msg: Msg) -> None:
        await msg.respond(
            QueryReply(ok=True, data=EventsPage(events=[]).model_dump()).model_dump_json().encode()
        )

    archive = await bus.nc.subscribe(subjects.query(Q_EVENTS_ARCHIVE), cb=empty_archive)
    other = Socket(who, bus, feeds)
    with pytest.raises(NotFound):
        await on_message_send(other, SocketMessageSend(client_msg_id="c2", text="x", thread_id=new_id("thr")))  # type: ignore[arg-type]
    assert other.subscriptions == {} and len(feeds) == 1
    await archive.unsubscribe()

    await on_message_send(other, SocketMessageSend(client_msg_id="c3", text="again", thread_id=thread))  # type: ignore[arg-type]
    retried = Socket(who, bus, feeds)  # c3 again, without the thread: its run is on ``thread``
    await on_message_send(retried, SocketMessageSend(client_msg_id="c3", text="again"))  # type: ignore[arg-type]
    assert isinstance(retried.frames[0], MessageAccepted) and retried.frames[0].thread_id == thread
    assert list(retried.subscriptions) == [thread] and len(feeds) == 1
    assert other.fresh == [] and retried.fresh == []  # an existing thread, a retried send
    for each in (socket, other, retried):
        for sub in each.subscriptions.values():
            await sub.stop()
    assert len(feeds) == 0
