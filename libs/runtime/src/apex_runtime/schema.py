"""Waiting for the schema a release needs, for the init container that keeps new pods
from starting before the migration job has finished (``python -m apex_<service>
wait-schema``). Works the same under ``kubectl apply``, Argo CD or Flux: whatever order
the tool applies things in, the pods of a release wait for their schema."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


def revision_ready(current: str | None, head: str, known: set[str]) -> bool:
    """The database is usable by this release: at its head revision, or at a revision
    this release does not know (a newer release migrated it; migrations keep the
    previous release working, so rolling back is safe)."""
    return current == head or (current is not None and current not in known)


async def wait_until_ready(
    check: Callable[[], Awaitable[bool]],
    what: str,
    *,
    timeout_s: float,
    every_s: float = 2.0,
    failures: tuple[type[BaseException], ...] = (OSError, TimeoutError),
) -> bool:
    """Polls ``check`` until it is true (True) or ``timeout_s`` passes (False); a store
    that does not answer yet (one of ``failures``) counts as not ready."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if await check():
                log.info("%s: ready", what)
                return True
            log.info("%s: waiting for the migration job", what)
        except failures as exc:
            log.info("%s: not reachable yet (%r)", what, exc)
        if time.monotonic() >= deadline:
            log.error("%s: not ready after %.0f s", what, timeout_s)
            return False
        await asyncio.sleep(every_s)
