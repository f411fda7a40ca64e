"""The Python client's reconnect delays are spread (full jitter): a whole pod's clients,
dropped by one drain (close 1012), come back over the window, not in the same instant."""

from __future__ import annotations

import random

import pytest

from apex_client import Backoff, full_jitter

CLIENTS = 2000


def herd(attempt: int, seed: int = 7) -> list[float]:
    rng = random.Random(seed)
    return [full_jitter(attempt, rng=rng) for _ in range(CLIENTS)]


@pytest.mark.parametrize("attempt", [0, 1, 2, 3, 6])
def test_delays_fill_the_window_uniformly(attempt: int) -> None:
    ceiling = min(10.0, 1.0 * 2**attempt)
    delays = sorted(herd(attempt))
    assert delays[0] >= 0.0 and delays[-1] <= ceiling
    # Kolmogorov-Smirnov distance to uniform(0, ceiling): 1.63/sqrt(n) is the 1 % level
    distance = max(abs((i + 1) / CLIENTS - d / ceiling) for i, d in enumerate(delays))
    assert distance < 1.63 / CLIENTS**0.5


def test_no_crowd_reconnects_in_the_same_80_ms() -> None:
    """The old schedule (200 ms +-20 %) put every client of a pod within 80 ms."""
    delays = sorted(herd(0))
    window = 0.08
    crowd = max(sum(1 for d in delays[i:] if d < start + window) for i, start in enumerate(delays))
    assert crowd <= 0.12 * CLIENTS


def test_the_ceiling_doubles_up_to_the_cap_and_resets_after_a_connection() -> None:
    backoff = Backoff(cap_s=10.0, rng=random.Random(1))
    ceilings = []
    for _ in range(6):
        backoff.next_delay()
        ceilings.append(min(10.0, 2 ** (backoff.attempt - 1)))
    assert ceilings == [1, 2, 4, 8, 10, 10]
    backoff.reset()
    assert backoff.attempt == 0
