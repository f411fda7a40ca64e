"""Delivery latency over trailing windows: how long an event took from ``occurred_at`` to
its frame being written to the client's socket, kept as histogram bucket counts per
minute for the last 24 hours. Pure (time passed in), so its promises are unit-tested.

Why buckets and not samples: the dashboard merges the figures of every gateway from
their heartbeats, and bucket counts add up exactly where percentiles do not. The same
bounds are the Prometheus histogram's (``apex_gateway_delivery_latency_seconds``), so the
dashboard and a PromQL ``histogram_quantile`` agree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

BOUNDS_S: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_SLOT_S = 60
_SLOTS = 24 * 60


class LatencyWindows:
    """Bucket counts of observations per minute; ``counts(window_s, now)`` adds up the
    minutes of a trailing window (the current, partial minute included)."""

    def __init__(self, bounds: Sequence[float] = BOUNDS_S) -> None:
        self.bounds = tuple(bounds)
        self._slot_of: list[int] = [-1] * _SLOTS
        self._counts: list[list[int]] = [[0] * (len(self.bounds) + 1) for _ in range(_SLOTS)]

    def observe(self, seconds: float, now: float) -> None:
        slot = int(now // _SLOT_S)
        index = slot % _SLOTS
        if self._slot_of[index] != slot:
            self._slot_of[index] = slot
            self._counts[index] = [0] * (len(self.bounds) + 1)
        self._counts[index][_bucket(self.bounds, max(seconds, 0.0))] += 1

    def counts(self, window_s: float, now: float) -> list[int]:
        current = int(now // _SLOT_S)
        oldest = current - max(1, math.ceil(window_s / _SLOT_S)) + 1
        total = [0] * (len(self.bounds) + 1)
        for index, slot in enumerate(self._slot_of):
            if oldest <= slot <= current:
                total = [a + b for a, b in zip(total, self._counts[index], strict=True)]
        return total


def _bucket(bounds: Sequence[float], seconds: float) -> int:
    for index, bound in enumerate(bounds):
        if seconds <= bound:
            return index
    return len(bounds)


def encode(counts: Sequence[int]) -> str:
    """Counts as heartbeat detail text (details are flat scalars)."""
    return ",".join(str(c) for c in counts)


def decode(text: str, size: int = len(BOUNDS_S) + 1) -> list[int] | None:
    """The inverse of ``encode``; None for text that is not ``size`` counts."""
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        return None
    return counts if len(counts) == size and all(c >= 0 for c in counts) else None


def quantile_ms(counts: Sequence[int], q: float, bounds: Sequence[float] = BOUNDS_S) -> float | None:
    """The q-quantile in milliseconds, interpolated linearly inside its bucket (as
    Prometheus' ``histogram_quantile``); the last finite bound for the overflow bucket;
    None without observations."""
    total = sum(counts)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for index, count in enumerate(counts):
        if count and seen + count >= rank:
            if index == len(bounds):
                return bounds[-1] * 1000
            lower = bounds[index - 1] if index else 0.0
            upper = bounds[index]
            return round((lower + (upper - lower) * (rank - seen) / count) * 1000, 1)
        seen += count
    return bounds[-1] * 1000
