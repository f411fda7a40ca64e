"""When to reconnect: exponential backoff with full jitter (each wait drawn uniformly
from zero to a ceiling that doubles per failed attempt, up to a cap). After a gateway
drains (close 1012) its clients must not come back together: a fixed delay with a
little noise brings a whole pod's sockets to the other pods within milliseconds of
each other, again and again as each pod of a rollout drains. Full jitter spreads them
over the whole window (AWS Architecture Blog, "Exponential Backoff And Jitter")."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

BASE_S = 1.0
CAP_S = 10.0


def full_jitter(
    attempt: int, *, base_s: float = BASE_S, cap_s: float = CAP_S, rng: random.Random | None = None
) -> float:
    """The wait before reconnect attempt ``attempt`` (0 = the first after a drop)."""
    ceiling = min(cap_s, base_s * 2 ** max(0, attempt))
    return (rng or random).uniform(0.0, ceiling)


@dataclass
class Backoff:
    """The attempts since the last successful connection, and the next wait."""

    base_s: float = BASE_S
    cap_s: float = CAP_S
    rng: random.Random | None = None
    attempt: int = field(default=0, init=False)

    def next_delay(self) -> float:
        delay = full_jitter(self.attempt, base_s=self.base_s, cap_s=self.cap_s, rng=self.rng)
        self.attempt += 1
        return delay

    def reset(self) -> None:
        """A connection succeeded: the next drop starts again from the base."""
        self.attempt = 0
