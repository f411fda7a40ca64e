"""The tool-call ledger: a call id that already completed is answered from here, never
run again. Backed by a JetStream key-value bucket (durable, replicated with the bus)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal, Protocol, TypeVar

import nats.errors
import nats.js.errors

from apex_contracts import ErrorCode, ErrorInfo, Unavailable
from apex_contracts.envelope import Model
from apex_runtime import CircuitBreaker

T = TypeVar("T")
_KV_FAILURES: tuple[type[BaseException], ...] = (
    nats.errors.Error,
    nats.js.errors.Error,
    OSError,
    TimeoutError,
)


class LedgerEntry(Model):
    status: Literal["ok", "error"]
    tool: str
    duration_ms: int
    result: dict[str, Any] | None = None
    error: ErrorInfo | None = None
    published: bool = False


class Ledger(Protocol):
    async def get(self, call_id: str) -> LedgerEntry | None:
        """The recorded outcome of a call, or None when it never completed. Raises
        Unavailable (store_unavailable, retryable) when the ledger cannot be read."""
        ...

    async def put(self, call_id: str, entry: LedgerEntry) -> None:
        """Records an outcome; the last write wins (outcomes of one call are equal).
        Raises Unavailable (store_unavailable, retryable) when it cannot be written."""
        ...


class KvLedger:
    def __init__(self, kv: Any, breaker: CircuitBreaker | None = None) -> None:
        self._kv = kv
        self._breaker = breaker or CircuitBreaker("tool_ledger", code=ErrorCode.STORE_UNAVAILABLE)

    async def get(self, call_id: str) -> LedgerEntry | None:
        async def read() -> Any:
            try:
                return await self._kv.get(call_id)
            except nats.js.errors.KeyNotFoundError:
                return None

        entry = await self._guarded(read)
        return None if entry is None or entry.value is None else LedgerEntry.model_validate_json(entry.value)

    async def put(self, call_id: str, entry: LedgerEntry) -> None:
        await self._guarded(lambda: self._kv.put(call_id, entry.model_dump_json().encode()))

    async def _guarded(self, call: Callable[[], Awaitable[T]]) -> T:
        try:
            return await self._breaker.call(call, _KV_FAILURES)
        except _KV_FAILURES as exc:
            raise Unavailable(
                f"The tool ledger did not answer: {exc!r}", code=ErrorCode.STORE_UNAVAILABLE
            ) from exc
