"""How long a client told to go away (``shutting_down``) should wait before it comes
back: full jitter over the drain window, so the clients of one gateway spread their
reconnects over the other gateways instead of arriving together."""

from __future__ import annotations

import random

# the shortest spread worth asking for: a second keeps even a quick restart from a herd
MIN_SPREAD_S = 1.0


def reconnect_spread_ms(window_s: float, rng: random.Random | None = None) -> int:
    """A delay drawn uniformly from [0, max(window, 1 s)] in milliseconds."""
    draw = (rng or random).random()
    return int(draw * max(window_s, MIN_SPREAD_S) * 1000)
