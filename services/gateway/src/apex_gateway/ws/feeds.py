"""One live feed per thread per gateway: a single ``Bus.follow`` of the thread's subject
(an ordered consumer on NATS) whose events are decoded and framed once, then handed to
every subscriber of the thread (sockets, SSE streams, long-polls).

A thousand sockets on one thread cost one consumer and one decode per event, not a
thousand of each (JetStream also caps the consumers of a stream). A feed starts after the
thread's last event when it was created, as the stream leader reports it (``follow`` from
that seq, so a consumer the cluster recreates resumes there too). ``join`` tells each
subscriber the seq through which it must read the log itself (the feed's start, or the
last event it handed over before the subscriber joined): the replay reads through it, so
replay and live overlap and never leave a gap, even when the thread's head was read from
a leader just elected that has not caught up; the subscriber drops the overlap by seq.

That seq is always one of the thread's own events (or 0): a read through a seq of the
stream that is not on the thread would wait for the thread's next event, and an idle
thread has none."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import nats.errors
import orjson
import stamina

from apex_contracts import ErrorCode, Unavailable
from apex_contracts.events import client_view
from apex_gateway.ws.ports import Listener
from apex_runtime import Stored, Subscription

log = logging.getLogger(__name__)
# what a feed's start meets while a cluster elects leaders (JetStream errors included)
_NOT_STARTED: tuple[type[Exception], ...] = (nats.errors.Error, Unavailable)


def event_frame(thread_id: str, seq: int, event: dict[str, Any]) -> str:
    return orjson.dumps(
        {"type": "event", "thread_id": thread_id, "seq": seq, "event": client_view(event)}
    ).decode()


def events_frame(thread_id: str, frames: list[str]) -> str:
    """Event frames of one thread joined into one ``events`` frame, each kept as it is."""
    return f'{{"type":"events","thread_id":{orjson.dumps(thread_id).decode()},"events":[{",".join(frames)}]}}'


def epoch_s(occurred_at: Any) -> float | None:
    """An event's ``occurred_at`` as epoch seconds; None when it cannot be read."""
    try:
        return datetime.fromisoformat(occurred_at).timestamp()
    except (TypeError, ValueError):
        return None


@dataclass
class _Feed:
    thread_id: str
    sub: Subscription | None = None
    starting: asyncio.Future[None] | None = None
    listeners: set[Listener] = field(default_factory=set)
    # the thread's last event when the feed started, then the last one it handed over:
    # what a new listener reads through itself (a seq on the thread, or 0)
    seen: int = 0

    async def deliver(self, stored: Stored) -> None:
        seq = stored.seq
        self.seen = max(self.seen, seq)
        event = orjson.loads(stored.data)
        frame = event_frame(self.thread_id, seq, event)
        occurred = epoch_s(event.get("occurred_at"))
        for listener in list(self.listeners):
            listener.live(seq, frame, occurred)


class ThreadFeeds:
    """The feeds of this gateway, shared by its connections; a feed lives while it has a
    listener."""

    def __init__(
        self,
        follow: Callable[..., Awaitable[Subscription]],
        head: Callable[[str], Awaitable[int]],
        *,
        start_within_s: float = 15.0,
    ) -> None:
        # ``follow`` (``Bus.follow``): its subscription resumes after the last seq it handed
        # over when the node that served it dies (in a cluster, within ~2 idle heartbeats);
        # ``head(subject)``: the seq of the thread's last event as the stream leader knows
        # it (``ThreadHistory.head(subject, leader=True)``), where a new feed starts
        self._follow = follow
        self._head = head
        self._start_within_s = start_within_s
        self._feeds: dict[str, _Feed] = {}

    def __len__(self) -> int:
        return len(self._feeds)

    async def join(self, subject: str, thread_id: str, listener: Listener) -> int:
        """Returns, once ``listener`` gets every event the feed hands over from now on, the
        seq through which the listener reads the log itself."""
        feed = self._feeds.get(subject)
        if feed is None:
            feed = self._feeds[subject] = _Feed(thread_id)
            feed.starting = asyncio.ensure_future(self._start(feed, subject))
        feed.listeners.add(listener)
        assert feed.starting is not None
        try:
            await asyncio.shield(feed.starting)
        except Unavailable:
            feed.listeners.discard(listener)
            if self._feeds.get(subject) is feed:
                del self._feeds[subject]
            raise
        return feed.seen

    async def leave(self, subject: str, listener: Listener) -> None:
        feed = self._feeds.get(subject)
        if feed is None or listener not in feed.listeners:
            return
        feed.listeners.discard(listener)
        if feed.listeners:
            return
        del self._feeds[subject]
        assert feed.starting is not None
        with contextlib.suppress(Unavailable):
            await asyncio.shield(feed.starting)
        if feed.sub is not None:
            await feed.sub.stop()  # never raises: a failed unsubscribe is logged by the bus

    async def _start(self, feed: _Feed, subject: str) -> None:
        """Creates the feed's consumer, trying again for ``start_within_s``: a cluster
        that lost a node may answer "unavailable" while it elects new leaders."""
        try:
            async for attempt in stamina.retry_context(
                on=_NOT_STARTED,
                attempts=None,
                timeout=self._start_within_s,
                wait_initial=0.1,
                wait_max=1.0,
                wait_jitter=0.1,
            ):
                if attempt.num > 1:
                    log.info(
                        "live feed of %s not started yet; trying again (attempt %d)", subject, attempt.num
                    )
                with attempt:
                    start = await self._head(subject)
                    feed.seen = max(feed.seen, start)
                    feed.sub = await self._follow(subject, feed.deliver, after_seq=start)
        except _NOT_STARTED as exc:
            raise Unavailable(
                "Live updates for this thread cannot start right now; subscribe again shortly.",
                code=ErrorCode.BUS_UNAVAILABLE,
            ) from exc
