"""Waiting for a fact on a subject, whether it is already in the log or still to come."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from apex_runtime.port import Bus, Notice, Subscription

log = logging.getLogger(__name__)


class SubjectWatch:
    """Waits for messages on a subject that match a predicate, whether already in the log
    or still to come. It subscribes first, then scans, so nothing published in between is
    missed. Many coroutines may wait on one watch at once; each sees every message."""

    def __init__(self, bus: Bus, subject: str, *, rescan_every_s: float = 2.0) -> None:
        self._bus = bus
        self._subject = subject
        self._rescan_every_s = rescan_every_s
        self._seen: list[dict[str, Any]] = []
        self._arrived = asyncio.Condition()
        self._sub: Subscription | None = None

    async def __aenter__(self) -> SubjectWatch:
        async def on_message(notice: Notice) -> None:
            try:
                message = orjson.loads(notice.data)
            except orjson.JSONDecodeError:
                log.warning("ignoring a non-JSON message on %s", notice.subject)
                return
            async with self._arrived:
                self._seen.append(message)
                self._arrived.notify_all()

        self._sub = await self._bus.listen(self._subject, on_message)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._sub is not None:
            await self._sub.stop()

    def mark(self) -> int:
        """A position: ``wait_for(since=mark)`` ignores messages that arrived before it."""
        return len(self._seen)

    async def wait_for(
        self,
        matches: Callable[[dict[str, Any]], bool],
        *,
        timeout: float,
        scan_after_seq: int | None = 0,
        since: int = 0,
    ) -> dict[str, Any]:
        """Returns the first matching message: from the log after ``scan_after_seq``
        (None skips the scan), else the first live one from ``since``; raises TimeoutError.
        With a scan, the log is read again every ``rescan_every_s`` while waiting: a live
        message lost to a reconnect is still found once it is stored."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        index = since
        while True:
            if scan_after_seq is not None:
                async for seq, data in self._bus.read_subject(self._subject, after_seq=scan_after_seq):
                    scan_after_seq = seq
                    message: dict[str, Any] = orjson.loads(data)
                    if matches(message):
                        return message
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError
            wait = remaining if scan_after_seq is None else min(remaining, self._rescan_every_s)
            try:
                async with asyncio.timeout(wait), self._arrived:
                    while True:
                        while index < len(self._seen):
                            message = self._seen[index]
                            index += 1
                            if matches(message):
                                return message
                        await self._arrived.wait()
            except TimeoutError:
                if loop.time() >= deadline:
                    raise
