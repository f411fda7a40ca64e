"""The port every read model implements so one runner can feed it from the log."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from apex_persistence.projection.delivery import Delivery


class Projection(Protocol):
    """A read model fed from one durable consumer.

    ``name`` is the store label (``postgres``, ``redis``, ``clickhouse``, ``audit``);
    ``failures`` are the driver exceptions that mean "the store is unavailable right
    now": the runner counts them against the store's circuit breaker and redelivers
    the batch later. Any other exception is a defect and stops the runner loudly.
    """

    name: str
    failures: tuple[type[BaseException], ...]

    async def apply(self, batch: Sequence[Delivery]) -> None:
        """Applies the batch so that the view equals having applied each event exactly
        once, whatever was applied before (redelivery, replay, any order), and records
        the batch's highest sequence as the checkpoint (or, for a projection that
        ``DefersCheckpoint``, records it by a later batch or its ``flush``). When it raises one of
        ``failures`` it may have written part of the batch; applying it again is safe."""
        ...

    async def position(self) -> int:
        """Returns the highest stream sequence applied (the checkpoint), 0 when none."""
        ...


@runtime_checkable
class DefersCheckpoint(Protocol):
    """A projection whose batches may leave their checkpoint for later: ``position`` can
    then be behind what is applied (never ahead) until ``flush`` writes it. The runner
    flushes when the log goes quiet and when it stops following."""

    async def flush(self) -> None:
        """Writes the checkpoint of what is applied; raises the projection's ``failures``."""
        ...
