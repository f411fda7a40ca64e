"""The port a rebuild fills and swaps in: one fresh table set (or key space) per store."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from apex_persistence.projection.ports import Projection

CatchUp = Callable[[], Awaitable[int]]


class FreshViews(Protocol):
    """A store's views rebuilt beside the live ones.

    ``prepare`` empties the fresh set and seeds it with every recorded erasure, so the
    log can never bring erased data back; ``projection`` writes into the fresh set;
    ``swap`` runs ``catch_up`` (which applies the last events to the fresh set and
    returns the sequence reached) and then makes the fresh set the live one, so readers
    always find a complete view; ``discard`` drops whatever the rebuild left (the fresh
    set after a failure, the retired set after a swap). ``live`` is the projection of
    the live views: after the swap the rebuild applies the events that arrived during
    the swap to it (idempotent), in case another replica wrote them to the retired set.
    """

    store: str

    # read-only to callers (properties), so an implementation may hold its own Projection type
    @property
    def projection(self) -> Projection: ...

    @property
    def live(self) -> Projection: ...

    async def prepare(self) -> None: ...

    async def finish(self) -> None:
        """Applies the store's retention to the fresh set, before it goes live."""
        ...

    async def swap(self, catch_up: CatchUp) -> int: ...

    async def discard(self) -> None: ...
