"""Replies of the read API that the contracts do not define (yet): a run's record and
the usage summary. Both belong in ``apex_contracts.queries``; see docs/persistence.md."""

from __future__ import annotations

from datetime import datetime

from apex_contracts import Model
from apex_contracts.report import ModelUsage, Money, Period


class RunView(Model):
    id: str
    thread_id: str
    status: str
    started_at: datetime | None = None
    ended_at: datetime | None = None
    duration_ms: int | None = None
    tool_calls: int = 0
    llm_tokens: int = 0
    llm_cost_usd: float | None = None
    error_code: str | None = None


class UsageSummaryView(Model):
    period: Period
    requests: int
    total_cost_usd: Money
    by_model: list[ModelUsage]
    sql: list[str] = []
