"""The narrow ports a thread subscription is built from (``subscription.py``), so the
replay/live seam can be built and tested without a socket, a server or a bus: where its
frames go (``EventSink``, a connection in production), the thread's live feed
(``LiveFeeds``), and the figures it counts (``DeliveryFigures``). The thread's log is
``history.ThreadHistory``."""

from __future__ import annotations

from typing import Protocol

from apex_contracts.envelope import Model
from apex_gateway.ws.outbox import Group


class EventSink(Protocol):
    """Where one subscriber's frames go: one client connection."""

    def send(self, frame: Model) -> None:
        """Queues an answer or an error frame, never waiting. A sink that cannot take it
        ends itself (slow consumer): the client resumes from its cursor."""
        ...

    def push_event(self, frame: str, occurred_at: float | None = None, group: Group | None = None) -> None:
        """Queues an event frame (already JSON), never waiting; ``occurred_at`` (epoch
        seconds) is given for live events, whose delivery latency is measured. Frames of
        one ``group`` (thread id, at most that many together) queued one after another
        may be written as one ``events`` frame. A full sink ends itself, like ``send``."""
        ...

    async def room(self) -> bool:
        """Waits until one more frame fits (a replay's pace is the client's reading);
        False when the sink is ending, and nothing more should be offered."""
        ...

    def drop_subscription(self, thread_id: str) -> None:
        """Forgets the subscription to ``thread_id`` and stops it (in the background):
        the subscriber told the client to resubscribe."""
        ...


class Listener(Protocol):
    def live(self, seq: int, frame: str, occurred_at: float | None) -> None:
        """One event as it was stored; called in stream order, never twice for a seq."""
        ...


class LiveFeeds(Protocol):
    """The live events of threads, shared by every subscriber of a thread."""

    async def join(self, subject: str, thread_id: str, listener: Listener) -> int:
        """Returns once ``listener`` gets every event the feed hands over from now on, with
        the seq through which the listener must read the log itself: anything on
        ``subject`` up to it may have passed before the listener joined, anything after it
        reaches the listener. A replay through ``max(head, that seq)`` and the feed leave
        no gap, even when the head was read from a replica or leader behind the feed.
        Raises Unavailable when the feed cannot start."""
        ...

    async def leave(self, subject: str, listener: Listener) -> None:
        """``listener`` gets nothing more; a no-op when it was not listening."""
        ...


class DeliveryFigures(Protocol):
    """What a subscription counts (``GatewayMetrics`` in production)."""

    def replayed(self, count: int = 1) -> None:
        """``count`` events sent from the log (a replay counts once per batch)."""
        ...

    def resent(self) -> None: ...

    def resynced(self) -> None: ...

    def ack_waited(self, seconds: float) -> None: ...
