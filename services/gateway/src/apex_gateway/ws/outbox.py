"""What one connection still has to write to its socket: at most ``limit`` frames of any
kind (events, answers, errors), so no client can grow a gateway by not reading.

``put`` never waits: it refuses a frame when the outbox is full (the connection then
ends as a slow consumer). ``room`` lets a replay wait for space instead of overflowing,
so a large replay to a client that reads is paced by the client."""

from __future__ import annotations

import asyncio
from collections import deque


class Outbox:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._frames: deque[tuple[str, float | None]] = deque()
        self._filled = asyncio.Event()
        self._has_room = asyncio.Event()
        self._has_room.set()

    def __len__(self) -> int:
        return len(self._frames)

    def put(self, text: str, occurred_at: float | None = None) -> bool:
        """Queues one frame; False (and nothing queued) when the outbox is full."""
        if len(self._frames) >= self.limit:
            return False
        self._frames.append((text, occurred_at))
        self._filled.set()
        if len(self._frames) >= self.limit:
            self._has_room.clear()
        return True

    async def get(self) -> tuple[str, float | None]:
        """The oldest frame, waiting for one."""
        while not self._frames:
            self._filled.clear()
            await self._filled.wait()
        item = self._frames.popleft()
        self._has_room.set()
        return item

    async def room(self, timeout_s: float) -> bool:
        """Waits until one more frame fits; False when none did within ``timeout_s``."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._has_room.wait()
        except TimeoutError:
            return False
        return True

    def clear(self) -> None:
        self._frames.clear()
        self._has_room.set()
