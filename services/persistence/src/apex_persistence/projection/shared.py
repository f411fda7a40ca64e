"""One ordered consumer of a subject for all the projectors of this process that follow
it: the log's messages cross the bus once, not once per store.

``SharedFollow.follow`` keeps ``Bus.follow``'s promise to each follower (every message
after its ``after_seq``, in seq order, each once, until stopped). A follower is served
by the subject's shared consumer while it is level with it, and by a private consumer
of its own while it is not:

- it joins the shared consumer when its ``after_seq`` is at or past the last seq that
  consumer handed over (the shared consumer hands over everything after that, and the
  follower drops what it already has by seq); else it follows privately from
  ``after_seq``;
- when a follower cannot take a message at once (``ready()`` is False: its queue is
  full), the shared consumer does not wait for it: the follower leaves it and follows
  privately from the last seq it was handed, so a slow store never holds back the
  others;
- a private follower that has caught up with the shared consumer (its last seq at or
  past the shared consumer's) joins it and stops its private consumer.

Each switch is at a seq the follower has been handed, and both consumers deliver in
seq order, so none leaves a gap; a message handed over twice around a switch is
dropped by seq."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Final

from apex_contracts import Unavailable
from apex_runtime import TRANSIENT_NATS_ERRORS, Stored, Subscription
from apex_runtime.port import StoredHandler

log = logging.getLogger(__name__)

Follow = Callable[..., Awaitable[Subscription]]
# what stops a follow (the bus gone or refusing the consumer): it is tried again
FOLLOW_FAILURES: Final[tuple[type[BaseException], ...]] = (Unavailable, *TRANSIENT_NATS_ERRORS)


class _Private:
    """A follower's own consumer; once retired (``live`` False) it hands over nothing."""

    def __init__(self) -> None:
        self.live = True
        self.sub: Subscription | None = None

    async def retire(self) -> None:
        self.live = False
        if self.sub is not None:
            await self.sub.stop()


class _Member(Subscription):
    """One follower: ``after`` is the last seq handed to it."""

    def __init__(
        self, owner: SharedFollow, subject: str, handler: StoredHandler, after: int, ready: Callable[[], bool]
    ) -> None:
        self._owner = owner
        self.subject = subject
        self.handler = handler
        self.ready = ready
        self.after = after
        self.private: _Private | None = None
        self.switching: asyncio.Task[None] | None = None
        self.stopped = False

    async def hand(self, stored: Stored) -> None:
        if stored.seq <= self.after or self.stopped:
            return
        self.after = stored.seq
        await self.handler(stored)

    async def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        await self._owner._leave(self)


class _Shared:
    """The subject's shared consumer: ``seen`` is where it started, then the last seq it
    handed over; ``members`` are the followers it serves, ``followers`` all of them (it
    stops when the last one leaves)."""

    def __init__(self, owner: SharedFollow, seen: int) -> None:
        self._owner = owner
        self.seen = seen
        self.sub: Subscription | None = None
        self.members: set[_Member] = set()
        self.followers: set[_Member] = set()
        self.starting: asyncio.Future[None] | None = None

    async def deliver(self, stored: Stored) -> None:
        self.seen = max(self.seen, stored.seq)
        for member in list(self.members):
            if stored.seq > member.after and not member.ready():
                self.members.discard(member)
                self._owner._leave_behind(member)
                continue
            await member.hand(stored)


class SharedFollow:
    """``follow`` for the projectors of one process, over ``Bus.follow``."""

    def __init__(self, follow: Follow, *, retry_s: float = 1.0) -> None:
        self._follow = follow
        self._retry_s = retry_s
        self._shared: dict[str, _Shared] = {}
        self._stopping: set[asyncio.Task[None]] = set()
        self.private_follows = 0  # consumers of their own that followers were given

    async def follow(
        self,
        subject: str,
        handler: StoredHandler,
        *,
        after_seq: int,
        ready: Callable[[], bool] = lambda: True,
    ) -> Subscription:
        """``Bus.follow`` for one follower; ``ready()``: whether it takes a message now."""
        member = _Member(self, subject, handler, after_seq, ready)
        shared = self._shared.get(subject)
        if shared is None:
            shared = self._shared[subject] = _Shared(self, seen=after_seq)
            shared.starting = asyncio.ensure_future(self._start(subject, shared))
        shared.followers.add(member)
        try:
            if after_seq < shared.seen:
                await self._private(member, after_seq)
            else:
                shared.members.add(member)
                assert shared.starting is not None
                await asyncio.shield(shared.starting)
        except BaseException:
            await member.stop()
            raise
        return member

    async def _start(self, subject: str, shared: _Shared) -> None:
        try:
            shared.sub = await self._follow(subject, shared.deliver, after_seq=shared.seen)
        except BaseException:
            if self._shared.get(subject) is shared:
                del self._shared[subject]
            raise

    async def _private(self, member: _Member, after_seq: int) -> None:
        """Follows privately from ``after_seq``, until level with the shared consumer."""
        self.private_follows += 1
        private = member.private = _Private()

        async def deliver(stored: Stored) -> None:
            if private.live:
                await member.hand(stored)
                self._join_if_level(member)

        try:
            private.sub = await self._follow(member.subject, deliver, after_seq=after_seq)
        except BaseException:
            if member.private is private:
                member.private = None
            raise
        if not private.live:  # retired (or stopped) while its consumer was being made
            await private.sub.stop()

    def _leave_behind(self, member: _Member) -> None:
        """The shared consumer goes on without a member that cannot take its message:
        the member follows privately from the last seq it was handed."""
        member.switching = asyncio.create_task(self._follow_privately(member))

    async def _follow_privately(self, member: _Member) -> None:
        while not member.stopped:
            try:
                await self._private(member, member.after)
            except FOLLOW_FAILURES as exc:
                log.warning("cannot follow %s privately yet; trying again: %r", member.subject, exc)
                await asyncio.sleep(self._retry_s)
                continue
            return

    def _join_if_level(self, member: _Member) -> None:
        shared = self._shared.get(member.subject)
        if shared is None or shared.sub is None or member.after < shared.seen or not member.ready():
            return
        private, member.private = member.private, None
        shared.members.add(member)
        if private is not None:
            # at once: its consumer must hand this member nothing more (it is stopped later,
            # between two of its messages, never while one is being handed over)
            private.live = False
            task = asyncio.create_task(private.retire())
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)

    async def _leave(self, member: _Member) -> None:
        # a private follow under way is not cancelled (its consumer could be left behind):
        # it sees the member retired once made, and stops it
        private, member.private = member.private, None
        if private is not None:
            await private.retire()
        shared = self._shared.get(member.subject)
        if shared is None or member not in shared.followers:
            return
        shared.members.discard(member)
        shared.followers.discard(member)
        if shared.followers:
            return
        del self._shared[member.subject]
        assert shared.starting is not None
        with contextlib.suppress(*FOLLOW_FAILURES):
            await asyncio.shield(shared.starting)
        if shared.sub is not None:
            await shared.sub.stop()
