"""Leases: one holder at a time for a name, however many replicas ask, in the JetStream
key-value bucket ``apex_leases``.

A lease is a key whose value names its holder and when it expires. Taking one is a
compare-and-set (create, or replace an expired value at its revision), so two replicas
never both hold it; a holder that dies simply lets it expire. ``hold`` renews the lease
in the background while the work runs and marks it ``lost`` when a renewal fails, so
the work can check before it commits. Expiry uses wall clocks: keep ``ttl_s`` far above
the clock skew between hosts and the pauses of a process.

Each taking of a lease has its own token: a renewal the bus did not confirm may land
later (the client sends what it buffered once it reconnects), so a renewal that loses its
compare-and-set first reads the lease back, and only another token there means it was
taken over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import nats.errors
import nats.js.errors
import orjson

from apex_contracts import ErrorCode, Unavailable
from apex_runtime.periodic import periodically
from apex_runtime.port import KvBucket, WrongRevision

log = logging.getLogger(__name__)
_KV_FAILURES: tuple[type[BaseException], ...] = (nats.errors.Error, OSError, TimeoutError)


@dataclass
class Lease:
    name: str
    holder: str
    revision: int
    expires_at: float
    lost: bool = False
    token: str = ""


class Leases:
    """Leases of one holder (a process) in one bucket."""

    def __init__(self, kv: KvBucket, holder: str, *, clock: Callable[[], float] = time.time) -> None:
        self._kv = kv
        self.holder = holder
        self._clock = clock

    def _value(self, ttl_s: float, token: str) -> tuple[bytes, float]:
        expires_at = self._clock() + ttl_s
        return orjson.dumps({"holder": self.holder, "token": token, "expires_at": expires_at}), expires_at

    async def try_acquire(self, name: str, ttl_s: float) -> Lease | None:
        """The lease when nobody holds it (or its holder let it expire); else None."""
        token = uuid.uuid4().hex
        value, expires_at = self._value(ttl_s, token)
        try:
            try:
                revision = await self._kv.create(name, value)
                return Lease(name, self.holder, revision, expires_at, token=token)
            except WrongRevision:
                pass
            entry = await self._kv.get(name)
            if entry is None:
                return None  # released in between: the next attempt creates it
            current = orjson.loads(entry.value) if entry.value else {}
            if float(current.get("expires_at", 0)) > self._clock():
                return None
            try:
                revision = await self._kv.update(name, value, last=entry.revision)
            except WrongRevision:
                return None  # another replica took the expired lease first
            log.warning("took over lease %s from %s (expired)", name, current.get("holder"))
            return Lease(name, self.holder, revision, expires_at, token=token)
        except _KV_FAILURES as exc:
            raise Unavailable(f"leases: {exc!r}", code=ErrorCode.BUS_UNAVAILABLE) from exc

    async def acquire(self, name: str, ttl_s: float, *, wait_s: float) -> Lease:
        """Waits up to ``wait_s`` for the lease; raises TimeoutError."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        delay = 0.005
        while True:
            lease = await self.try_acquire(name, ttl_s)
            if lease is not None:
                return lease
            if loop.time() + delay > deadline:
                raise TimeoutError(f"lease {name} is held")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)

    async def renew(self, lease: Lease, ttl_s: float) -> bool:
        """Extends a lease still held; False (and ``lost``) when it was taken over."""
        value, expires_at = self._value(ttl_s, lease.token)
        while True:
            try:
                lease.revision = await self._kv.update(lease.name, value, last=lease.revision)
            except WrongRevision:
                entry = await self._kv.get(lease.name)
                current = orjson.loads(entry.value) if entry is not None and entry.value else {}
                if entry is None or current.get("token") != lease.token or entry.revision == lease.revision:
                    lease.lost = True
                    return False
                lease.revision = entry.revision  # a renewal of ours landed late: renew from there
                continue
            lease.expires_at = expires_at
            return True

    async def release(self, lease: Lease) -> None:
        """Gives the lease up (a no-op when it was taken over meanwhile)."""
        if lease.lost:
            return
        try:
            await self._kv.delete(lease.name, last=lease.revision)
        except WrongRevision:
            pass
        except _KV_FAILURES as exc:
            log.warning("lease %s not released (%r); it expires by itself", lease.name, exc)

    @contextlib.asynccontextmanager
    async def hold(self, name: str, ttl_s: float, *, wait_s: float) -> AsyncIterator[Lease]:
        """Holds the lease for the block, renewed every third of ``ttl_s``; a renewal
        that fails marks it ``lost`` (the block checks before it commits anything)."""
        lease = await self.acquire(name, ttl_s, wait_s=wait_s)
        async with self.keep(lease, ttl_s):
            yield lease

    @contextlib.asynccontextmanager
    async def keep(self, lease: Lease, ttl_s: float) -> AsyncIterator[Lease]:
        """Keeps a lease taken with ``try_acquire`` for the block, as ``hold`` does, and
        releases it at the end."""

        async def renew() -> None:
            if lease.lost:
                return
            try:
                await self.renew(lease, ttl_s)
            except _KV_FAILURES as exc:
                log.warning("lease %s not renewed: %r", lease.name, exc)
                if self._clock() >= lease.expires_at:
                    lease.lost = True

        try:
            async with periodically(ttl_s / 3, renew, name=f"lease:{lease.name}"):
                yield lease
        finally:
            await self.release(lease)
