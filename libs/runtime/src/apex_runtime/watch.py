"""Following a subject's log: every message stored after a seq, in order, each once, and
waiting for the ones that match a predicate."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson

from apex_contracts import ErrorCode, Unavailable

if TYPE_CHECKING:
    from apex_runtime.port import Bus, Stored, Subscription

log = logging.getLogger(__name__)


class Held(NamedTuple):
    """A message the watch holds: its seq, the JSON object (empty when the message is
    not one) and the bytes as stored."""

    seq: int
    message: dict[str, Any]
    data: bytes


class SubjectWatch:
    """Holds every message stored on a subject after ``after_seq`` (None: after the
    subject's last message when the watch opens), in the log's order, each once: an
    ordered consumer (``Bus.follow``) hands them over as they are stored, so nothing is
    read twice and no message is seen before the log has it. Many coroutines may wait on
    one watch at once; each sees every message."""

    def __init__(self, bus: Bus, subject: str, *, after_seq: int | None = None) -> None:
        self._bus = bus
        self._subject = subject
        self._after_seq = after_seq
        self._held: list[Held] = []
        self._seqs: list[int] = []
        self._arrived = asyncio.Condition()
        self._sub: Subscription | None = None
        self.start = 0  # the watch holds every message stored after this seq

    async def __aenter__(self) -> SubjectWatch:
        after = self._after_seq
        if after is None:
            after = await self._bus.last_seq(self._subject)
        self.start = after
        self._sub = await self._bus.follow(self._subject, self._on_stored, after_seq=after)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._sub is not None:
            await self._sub.stop()

    async def _on_stored(self, stored: Stored) -> None:
        if self._seqs and stored.seq <= self._seqs[-1]:
            return
        try:
            message = orjson.loads(stored.data)
        except orjson.JSONDecodeError:
            log.warning("a message on %s that is not JSON (seq %d)", stored.subject, stored.seq)
            message = {}
        if not isinstance(message, dict):
            message = {}
        async with self._arrived:
            self._held.append(Held(stored.seq, message, bytes(stored.data)))
            self._seqs.append(stored.seq)
            self._arrived.notify_all()

    @property
    def last(self) -> int:
        """The highest seq held (``start`` when none yet)."""
        return self._seqs[-1] if self._seqs else self.start

    async def through(self, seq: int, *, timeout: float) -> None:
        """Returns once the watch holds every message stored up to ``seq``; raises
        Unavailable(bus_unavailable) when they do not arrive within ``timeout``."""
        try:
            async with asyncio.timeout(timeout), self._arrived:
                await self._arrived.wait_for(lambda: self.last >= seq)
        except TimeoutError as exc:
            raise Unavailable(
                f"{self._subject} was not read through seq {seq} in {timeout:.0f} s",
                code=ErrorCode.BUS_UNAVAILABLE,
            ) from exc

    def mark(self) -> int:
        """A position: ``wait_for(since=mark)`` ignores messages that arrived before it."""
        return len(self._held)

    def after(self, seq: int) -> Iterator[Held]:
        """The messages held with a seq above ``seq``, in order."""
        for index in range(bisect.bisect_right(self._seqs, seq), len(self._held)):
            yield self._held[index]

    async def wait_for(
        self,
        matches: Callable[[dict[str, Any]], bool],
        *,
        timeout: float,
        scan_after_seq: int | None = 0,
        since: int = 0,
    ) -> dict[str, Any]:
        """Returns the first matching message stored after ``scan_after_seq`` (what was
        stored before the watch's start is read from the log once), or, with None, the
        first held from mark ``since`` on; raises TimeoutError."""
        if scan_after_seq is not None:
            if scan_after_seq < self.start:
                async for _seq, data in self._bus.read_subject(
                    self._subject, after_seq=scan_after_seq, upto_seq=self.start
                ):
                    message: dict[str, Any] = orjson.loads(data)
                    if matches(message):
                        return message
            index = bisect.bisect_right(self._seqs, scan_after_seq)
        else:
            index = since
        async with asyncio.timeout(timeout), self._arrived:
            while True:
                while index < len(self._held):
                    message = self._held[index].message
                    index += 1
                    if matches(message):
                        return message
                await self._arrived.wait()


class _Shared:
    def __init__(self, watch: SubjectWatch) -> None:
        self.watch = watch
        self.users = 0
        self.opening: asyncio.Future[SubjectWatch] | None = None
        self.closing: asyncio.TimerHandle | None = None


class WatchPool:
    """Watches shared by one process's work: a watch of (subject, after_seq) stays open
    ``linger_s`` after its last user left, so the next step of the same run taken by this
    process uses it as it is (one ordered consumer per run and process, not one per step)."""

    def __init__(self, bus: Bus, *, linger_s: float = 2.0) -> None:
        self._bus = bus
        self._linger_s = linger_s
        self._open: dict[tuple[str, int], _Shared] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._open)

    @contextlib.asynccontextmanager
    async def watch(self, subject: str, after_seq: int) -> AsyncIterator[SubjectWatch]:
        key = (subject, after_seq)
        shared = self._open.get(key)
        if shared is None:
            shared = self._open[key] = _Shared(SubjectWatch(self._bus, subject, after_seq=after_seq))
            shared.opening = asyncio.ensure_future(shared.watch.__aenter__())
        shared.users += 1
        if shared.closing is not None:
            shared.closing.cancel()
            shared.closing = None
        try:
            assert shared.opening is not None
            try:
                watch = await asyncio.shield(shared.opening)
            except BaseException:
                if self._open.get(key) is shared and shared.opening.done():
                    del self._open[key]  # a watch that did not open is not kept
                raise
            yield watch
        finally:
            shared.users -= 1
            if shared.users == 0 and self._open.get(key) is shared:
                loop = asyncio.get_running_loop()
                shared.closing = loop.call_later(self._linger_s, self._close_later, key, shared)

    def _close_later(self, key: tuple[str, int], shared: _Shared) -> None:
        if shared.users or self._open.get(key) is not shared:
            return
        del self._open[key]
        task = asyncio.ensure_future(shared.watch.__aexit__(None, None, None))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        """Stops every watch (in use or lingering)."""
        opened, self._open = list(self._open.values()), {}
        for shared in opened:
            if shared.closing is not None:
                shared.closing.cancel()
            opening = shared.opening
            if (
                opening is not None
                and opening.done()
                and not opening.cancelled()
                and opening.exception() is None
            ):
                await shared.watch.__aexit__(None, None, None)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
