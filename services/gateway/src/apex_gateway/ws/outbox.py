"""What one connection still has to write to its socket: at most ``limit`` frames of any
kind (events, answers, errors), so no client can grow a gateway by not reading.

``put`` never waits: it refuses a frame when the outbox is full (the connection then
ends as a slow consumer). ``room`` lets a replay wait for space instead of overflowing,
so a large replay to a client that reads is paced by the client.

Event frames may carry a group (a thread, and how many of its frames may be written as
one): ``get_group`` hands the oldest frame over with the frames queued right after it in
the same group, so a connection that is behind writes one ``events`` frame where it
would have written many. Frames are never reordered: only a run of consecutive frames
of one group is joined."""

from __future__ import annotations

import asyncio
from collections import deque

from apex_contracts.frames import BATCH_BYTES

# a thread's id, and how many of its event frames may be joined into one
Group = tuple[str, int]
Queued = tuple[str, float | None, Group | None]


class Outbox:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._frames: deque[Queued] = deque()
        self._filled = asyncio.Event()
        self._has_room = asyncio.Event()
        self._has_room.set()

    def __len__(self) -> int:
        return len(self._frames)

    def put(self, text: str, occurred_at: float | None = None, group: Group | None = None) -> bool:
        """Queues one frame; False (and nothing queued) when the outbox is full."""
        if len(self._frames) >= self.limit:
            return False
        self._frames.append((text, occurred_at, group))
        self._filled.set()
        if len(self._frames) >= self.limit:
            self._has_room.clear()
        return True

    async def get(self) -> tuple[str, float | None]:
        """The oldest frame, waiting for one."""
        text, occurred, _ = await self._oldest()
        return text, occurred

    async def get_group(self) -> tuple[Group | None, list[tuple[str, float | None]]]:
        """The oldest frame and the frames of its group queued right after it: at most
        the group's count, and no more than ``BATCH_BYTES`` of text past the first."""
        text, occurred, group = await self._oldest()
        taken = [(text, occurred)]
        if group is None:
            return None, taken
        size = len(text)
        frames = self._frames
        while frames and len(taken) < group[1]:
            nxt, at, its = frames[0]
            if its != group or size + len(nxt) > BATCH_BYTES:
                break
            frames.popleft()
            size += len(nxt)
            taken.append((nxt, at))
        self._has_room.set()
        return group, taken

    async def _oldest(self) -> Queued:
        while not self._frames:
            self._filled.clear()
            await self._filled.wait()
        item = self._frames.popleft()
        self._has_room.set()
        return item

    async def room(self, timeout_s: float) -> bool:
        """Waits until one more frame fits; False when none did within ``timeout_s``."""
        if self._has_room.is_set():  # the usual case, without a timer
            return True
        try:
            async with asyncio.timeout(timeout_s):
                await self._has_room.wait()
        except TimeoutError:
            return False
        return True

    def clear(self) -> None:
        self._frames.clear()
        self._has_room.set()
