"""The tool-call ledger: one record per call id, in a JetStream key-value bucket (durable,
replicated with the bus). A record is either a ``Claim`` (an executor holds the call
and is running its body, under a lease it renews) or a ``LedgerEntry`` (the call's
outcome). Every change after the first is a compare-and-set on the record's revision,
so two executors can never both believe they hold a call, and an outcome is written
only by the executor that still holds the claim (``claims.py`` has the protocol)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Literal, Protocol, TypeVar

import nats.errors
import nats.js.errors
from pydantic import Field, ValidationError

from apex_contracts import ErrorCode, ErrorInfo, Unavailable, utcnow
from apex_contracts.envelope import Model
from apex_runtime import CircuitBreaker, KvBucket, WrongRevision

T = TypeVar("T")
_KV_FAILURES: tuple[type[BaseException], ...] = (
    nats.errors.Error,
    nats.js.errors.Error,
    OSError,
    TimeoutError,
)


class LedgerEntry(Model):
    """A call's outcome."""

    status: Literal["ok", "error"]
    tool: str
    duration_ms: int
    result: dict[str, Any] | None = None
    error: ErrorInfo | None = None
    published: bool = False


class Claim(Model):
    """An executor holds the call: ``claimant`` (instance and execution) runs its body and
    renews the record at least every ``lease_s`` seconds; ``attempt`` counts the claims
    of this call (a takeover of an expired lease is the next attempt)."""

    claimant: str
    attempt: int = Field(default=1, ge=1)
    lease_s: float = Field(gt=0)
    renewed_at: datetime = Field(default_factory=utcnow)


Record = Claim | LedgerEntry


class Taken(Exception):
    """The call already has a record (``create``) or it changed since it was read
    (``replace``, ``release``): another executor got there first."""


class Ledger(Protocol):
    async def read(self, call_id: str) -> tuple[Record, int] | None:
        """The call's record and its revision; None when the call was never claimed.
        Raises Unavailable (store_unavailable, retryable) when the ledger cannot be read."""
        ...

    async def create(self, call_id: str, record: Record) -> int:
        """Writes the first record of a call; returns its revision. Raises Taken when the
        call already has one, Unavailable when the ledger cannot be written."""
        ...

    async def replace(self, call_id: str, record: Record, revision: int) -> int:
        """Replaces the record at ``revision``; returns the new revision. Raises Taken
        when the record is no longer at ``revision``."""
        ...

    async def release(self, call_id: str, revision: int) -> None:
        """Drops a claim still at ``revision`` (its holder gives the call back without an
        outcome); a claim that moved on is left alone."""
        ...


class KvLedger:
    def __init__(self, kv: KvBucket, breaker: CircuitBreaker | None = None) -> None:
        self._kv = kv
        self._breaker = breaker or CircuitBreaker("tool_ledger", code=ErrorCode.STORE_UNAVAILABLE)

    async def read(self, call_id: str) -> tuple[Record, int] | None:
        entry = await self._guarded(lambda: self._kv.get(call_id))
        if entry is None or not entry.value:
            return None
        return parse_record(entry.value), int(entry.revision)

    async def create(self, call_id: str, record: Record) -> int:
        async def create() -> int:
            try:
                return int(await self._kv.create(call_id, record.model_dump_json().encode()))
            except WrongRevision as exc:
                raise Taken(call_id) from exc

        return await self._guarded(create)

    async def replace(self, call_id: str, record: Record, revision: int) -> int:
        async def update() -> int:
            try:
                return int(await self._kv.update(call_id, record.model_dump_json().encode(), last=revision))
            except WrongRevision as exc:
                raise Taken(call_id) from exc

        return await self._guarded(update)

    async def release(self, call_id: str, revision: int) -> None:
        async def delete() -> None:
            try:
                await self._kv.delete(call_id, last=revision)
            except WrongRevision:  # the claim moved on: left alone
                return

        await self._guarded(delete)

    async def _guarded(self, call: Callable[[], Awaitable[T]]) -> T:
        try:
            return await self._breaker.call(call, _KV_FAILURES)
        except Taken:
            raise
        except _KV_FAILURES as exc:
            raise Unavailable(
                f"The tool ledger did not answer: {exc!r}", code=ErrorCode.STORE_UNAVAILABLE
            ) from exc


def parse_record(raw: bytes) -> Record:
    """A claim or an outcome (outcomes written before claims existed read as outcomes)."""
    try:
        return Claim.model_validate_json(raw)
    except ValidationError:
        return LedgerEntry.model_validate_json(raw)
