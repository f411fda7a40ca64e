"""What one connection has been sent of one thread, and what it still owes an ack for.
Pure (no I/O, time passed in), so its promises are property-tested.

Promises:
- ``offer`` accepts each seq once, in increasing order: no duplicate, no reordering.
- ``ack`` is cumulative and never moves backwards.
- Once the client has acked anything on this subscription, frames it has not acked within
  ``ack_timeout_s`` are handed back by ``due`` to be sent again (same seq), with the wait
  doubling each time up to ``max_resends``; past that the client must resynchronise.
  A client that never acks is not tracked: a WebSocket does not lose frames by itself,
  and resending to a client that does not ack would only duplicate.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


class ResyncNeeded(Exception):
    """The client is too far behind (too many unacked frames, or resends exhausted)."""

    def __init__(self, last_seq: int) -> None:
        super().__init__(f"resync from {last_seq}")
        self.last_seq = last_seq


@dataclass
class DeliveryWindow:
    after_seq: int
    ack_timeout_s: float = 10.0
    max_resends: int = 5
    max_unacked: int = 4096
    last_sent: int = field(init=False)
    acked: int = field(init=False)
    tracking: bool = field(default=False, init=False)
    resends: int = field(default=0, init=False)
    _unacked: deque[tuple[int, str, float]] = field(default_factory=deque, init=False)
    _deadline: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.last_sent = self.after_seq
        self.acked = self.after_seq

    def offer(self, seq: int, frame: str, now: float) -> bool:
        """True when ``frame`` (event ``seq``) should be sent now; False for one already sent."""
        if seq <= self.last_sent:
            return False
        self.last_sent = seq
        if self.tracking:
            if len(self._unacked) >= self.max_unacked:
                raise ResyncNeeded(self.acked)
            self._unacked.append((seq, frame, now))
            if self._deadline is None:
                self._deadline = now + self.ack_timeout_s
        return True

    def ack(self, seq: int, now: float) -> float | None:
        """Records a cumulative ack; returns how long the newest frame it covers waited
        for it (None when unknown)."""
        seq = min(seq, self.last_sent)
        if seq <= self.acked and self.tracking:
            return None
        self.tracking = True
        self.acked = max(self.acked, seq)
        waited = None
        while self._unacked and self._unacked[0][0] <= self.acked:
            waited = now - self._unacked.popleft()[2]
        self.resends = 0
        self._deadline = now + self.ack_timeout_s if self._unacked else None
        return waited

    @property
    def unacked(self) -> int:
        return len(self._unacked)

    def due(self, now: float) -> list[str]:
        """Frames to send again now (oldest first); raises ResyncNeeded when exhausted."""
        if self._deadline is None or now < self._deadline or not self._unacked:
            return []
        if self.resends >= self.max_resends:
            raise ResyncNeeded(self.acked)
        self.resends += 1
        self._deadline = now + self.ack_timeout_s * (2**self.resends)
        return [frame for _seq, frame, _at in self._unacked]
