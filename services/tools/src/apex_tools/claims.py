"""Who runs a tool call: claim it in the ledger before running it, keep the claim alive
while running, write the outcome under it.

The guarantee: **a tool's body runs at most once per call id while its lease holds**;
only the executor holding the claim writes the outcome, and a body that runs again after
its lease expired (its executor was paused or killed past it) is told the call id as its
idempotency key.

- ``acquire`` creates the claim (a key-value create, which fails when any record
  exists) and reads the record only when that is refused: an outcome is the answer.
  When another executor holds the call, it waits: for the outcome, or until the claim
  has not been renewed for a whole lease (its holder is gone), then takes it over by
  compare-and-set on the revision it saw (two waiters cannot both win).
- ``leased`` runs the body while renewing the claim every quarter lease; a renewal that
  finds the record changed (another executor took over) interrupts the body
  (``LeaseLost``): its outcome would not be written anyway.
- ``finish`` writes the outcome at the claim's revision; ``LeaseLost`` when it moved on.

Expiry is judged on the waiter's own clock (the claim's revision unchanged for
``lease_s``), never by comparing clocks of two machines.

A write the ledger did not confirm (a timeout while the bus restarts) may still land:
the client sends what it buffered once it reconnects. So a compare-and-set that loses is
not yet proof of a takeover: ``_ours`` reads the record back, and a claim with this
executor's own claimant (its renewal landed) or the very outcome it wrote means the
claim still holds, at the revision read. Without that, an executor whose own renewal
landed late would drop its outcome as "taken over" and the call would never complete."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TypeVar

from apex_contracts import Unavailable, utcnow
from apex_runtime.periodic import periodically
from apex_tools.ledger import Claim, Ledger, LedgerEntry, Taken

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class CallScope:
    """The call a tool body is running for. A tool with a side effect uses ``call_id`` as
    its idempotency key: a body run again after a lease expired then changes nothing
    twice. ``attempt`` is 1, or more after takeovers."""

    call_id: str
    attempt: int


# Set by the executor around a tool's body (tools read it, they never set it).
CALL: ContextVar[CallScope | None] = ContextVar("apex_tool_call", default=None)


class LeaseLost(Exception):
    """Another executor took the call over: this one's work on it is void."""


@dataclass
class Held:
    """A claim this executor holds, at ``revision``."""

    call_id: str
    claim: Claim
    revision: int
    taken_over: bool = False


async def acquire(
    ledger: Ledger,
    call_id: str,
    claimant: str,
    lease_s: float,
    *,
    poll_s: float = 0.25,
    on_wait: Callable[[], None] | None = None,
) -> Held | LedgerEntry:
    """The call's outcome, or a claim on it for ``claimant`` (waiting while another
    executor's lease holds; ``on_wait`` is told once when it starts waiting)."""
    loop = asyncio.get_running_loop()
    seen: tuple[int, float] | None = None  # (revision, when this waiter first saw it)
    unclaimed = True  # a call is nearly always new: claim it first, read when refused
    while True:
        if unclaimed:
            claim = Claim(claimant=claimant, lease_s=lease_s)
            try:
                return Held(call_id, claim, await ledger.create(call_id, claim))
            except Taken:
                pass
        found = await ledger.read(call_id)
        if unclaimed := found is None:
            continue  # released meanwhile
        record, revision = found
        if isinstance(record, LedgerEntry):
            return record
        now = loop.time()
        if seen is None and on_wait is not None:
            on_wait()
            on_wait = None
        if seen is None or seen[0] != revision:
            seen = (revision, now)
        elif now - seen[1] >= record.lease_s:
            claim = Claim(claimant=claimant, lease_s=lease_s, attempt=record.attempt + 1)
            try:
                held = Held(call_id, claim, await ledger.replace(call_id, claim, revision), taken_over=True)
            except Taken:
                seen = None
                continue
            log.warning(
                "took over tool call %s from %s: its lease of %.0f s expired",
                call_id,
                record.claimant,
                lease_s,
            )
            return held
        await asyncio.sleep(poll_s)


async def leased(ledger: Ledger, held: Held, body: Awaitable[T]) -> T:
    """Runs ``body`` while renewing ``held`` every quarter lease; raises LeaseLost (and
    cancels the body) when a renewal finds the claim taken over."""
    work = asyncio.ensure_future(body)
    try:
        async with periodically(
            held.claim.lease_s / 4, lambda: _renew(ledger, held), name=f"claim:{held.call_id}"
        ) as renewer:
            await asyncio.wait({work, renewer}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not work.done():
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await work
    return work.result()


async def _renew(ledger: Ledger, held: Held) -> None:
    """Renews the claim once. A ledger that does not answer is asked again at the next
    renewal (the work goes on; ``finish`` tells whether the claim held)."""
    renewed = held.claim.model_copy(update={"renewed_at": utcnow()})
    try:
        held.revision = await ledger.replace(held.call_id, renewed, held.revision)
    except Taken as exc:
        if await _ours(ledger, held) is None:
            raise LeaseLost(held.call_id) from exc
        return  # an unconfirmed renewal of ours landed: renew from there
    except Unavailable as exc:
        log.warning("lease of tool call %s not renewed: %s", held.call_id, exc.message)
        return
    held.claim = renewed


async def finish(ledger: Ledger, held: Held, outcome: LedgerEntry) -> int:
    """Writes the outcome under the claim; returns its revision. LeaseLost when another
    executor took the call over meanwhile (its outcome is the one that counts)."""
    while True:
        try:
            return await ledger.replace(held.call_id, outcome, held.revision)
        except Taken as exc:
            match await _ours(ledger, held, outcome):
                case None:
                    raise LeaseLost(held.call_id) from exc
                case LedgerEntry():
                    return held.revision  # an unconfirmed write of this outcome landed
                case Claim():
                    continue  # a late renewal of ours moved the revision: write over it


async def give_back(ledger: Ledger, held: Held) -> None:
    """Releases a claim without an outcome (the call will be tried again), so the next
    delivery claims it at once instead of waiting out the lease."""
    await ledger.release(held.call_id, held.revision)
    if isinstance(await _ours(ledger, held), Claim):  # a late renewal of ours: release that
        await ledger.release(held.call_id, held.revision)


async def _ours(ledger: Ledger, held: Held, outcome: LedgerEntry | None = None) -> Claim | LedgerEntry | None:
    """The record, when it is still this executor's: its own claim (``held`` moves to
    that revision) or ``outcome`` itself; None when another executor's record is there
    (or none is)."""
    found = await ledger.read(held.call_id)
    if found is None:
        return None
    record, revision = found
    if isinstance(record, Claim) and record.claimant == held.claim.claimant:
        held.claim, held.revision = record, revision
        return record
    if outcome is not None and record.model_dump_json() == outcome.model_dump_json():
        held.revision = revision
        return record
    return None
