"""The usage ingest handler keeps a command while ClickHouse is away: retried with backoff
until it is stored, or refused as ``store_unavailable`` once its patience is spent; a
defect is never retried."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from apex_contracts import ErrorCode, Unavailable
from apex_persistence.analytics.port import AnalyticsUnavailable
from apex_persistence.api.ingest import UsageIngestHandler
from apex_runtime import CircuitBreaker


class FlakyLedger:
    failures = (AnalyticsUnavailable,)

    def __init__(self, failing: int, error: Exception | None = None) -> None:
        self.failing = failing
        self.error = error or AnalyticsUnavailable("engine away")
        self.calls = 0

    async def ingest(self, tenant_id: str, records: list[Any]) -> int:
        self.calls += 1
        if self.calls <= self.failing:
            raise self.error
        return len(records)


def command() -> Any:
    return SimpleNamespace(tenant_id="ten_x", data=SimpleNamespace(batch_id="b1", batch=lambda: [1, 2, 3]))


def handler(ledger: FlakyLedger, patience_s: float) -> UsageIngestHandler:
    breaker = CircuitBreaker("clickhouse", threshold=100, reset_after_s=0.1)
    return UsageIngestHandler(ledger, breaker, patience_s=patience_s)


async def test_a_short_outage_is_a_delay() -> None:
    ledger = FlakyLedger(failing=2)
    assert await handler(ledger, patience_s=10).handle(command()) == 3
    assert ledger.calls == 3


async def test_a_long_outage_is_store_unavailable_after_the_patience() -> None:
    ledger = FlakyLedger(failing=10_000)
    with pytest.raises(Unavailable) as refused:
        await handler(ledger, patience_s=0.5).handle(command())
    assert refused.value.code == ErrorCode.STORE_UNAVAILABLE
    assert 2 <= ledger.calls < 10


async def test_a_defect_is_not_retried() -> None:
    ledger = FlakyLedger(failing=1, error=ValueError("bad row"))
    with pytest.raises(ValueError, match="bad row"):
        await handler(ledger, patience_s=10).handle(command())
    assert ledger.calls == 1
