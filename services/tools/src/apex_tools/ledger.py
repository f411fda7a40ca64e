"""The tool-call ledger: a call id that already completed is answered from here, never
run again. Backed by a JetStream key-value bucket (durable, replicated with the bus)."""

from __future__ import annotations

from typing import Any, Literal, Protocol

import nats.js.errors

from apex_contracts import ErrorInfo
from apex_contracts.envelope import Model


class LedgerEntry(Model):
    status: Literal["ok", "error"]
    tool: str
    duration_ms: int
    result: dict[str, Any] | None = None
    error: ErrorInfo | None = None
    published: bool = False


class Ledger(Protocol):
    async def get(self, call_id: str) -> LedgerEntry | None:
        """The recorded outcome of a call, or None when it never completed."""
        ...

    async def put(self, call_id: str, entry: LedgerEntry) -> None:
        """Records an outcome; the last write wins (outcomes of one call are equal)."""
        ...


class KvLedger:
    def __init__(self, kv: Any) -> None:
        self._kv = kv

    async def get(self, call_id: str) -> LedgerEntry | None:
        try:
            entry = await self._kv.get(call_id)
        except nats.js.errors.KeyNotFoundError:
            return None
        return None if entry.value is None else LedgerEntry.model_validate_json(entry.value)

    async def put(self, call_id: str, entry: LedgerEntry) -> None:
        await self._kv.put(call_id, entry.model_dump_json().encode())
