"""Rows of the analytics tables (pure): an event as a row of ``events``, a usage
record as a row of ``llm_usage`` with its cost and its dedup key."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from apex_contracts import UsageRecord
from apex_contracts.pricing import PriceCatalogue
from apex_persistence.projection import facts
from apex_persistence.projection.delivery import Projected

Row = dict[str, Any]
# ``llm_usage.cost_source``: "reported" (uploaded), the price table's name and version
# (``pricing.TABLE``, e.g. "genai-prices 0.2.3"), "unknown" (unpriced); rows stored before
# the table came in say "catalogue" (Apex's hand-kept list of 2026-03-21).
REPORTED, UNKNOWN = "reported", "unknown"


def ch_time(moment: datetime) -> str:
    """A moment as ClickHouse DateTime64(3, 'UTC') text."""
    return moment.astimezone(UTC).isoformat(" ", "milliseconds")[:23]


def from_ch_time(text: str) -> datetime:
    """The inverse of ``ch_time``: ClickHouse DateTime64 text (always UTC here)."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def event_row(projected: Projected) -> Row:
    event = projected.event
    return {
        "tenant_id": event.tenant_id,
        "user_id": event.user_id,
        "thread_id": event.thread_id,
        "run_id": event.run_id,
        "seq": projected.seq,
        "id": event.id,
        "type": event.type,
        "agent": facts.agent_of(event),
        "occurred_at": ch_time(event.occurred_at),
        "duration_ms": facts.duration_ms(event),
        "tool": facts.tool_name(event),
        "status": facts.event_status(event),
        "tokens": facts.tokens(event),
        # Keys sorted: the same event read back from the archive (jsonb) is the same text.
        "payload": orjson.dumps(projected.payload, option=orjson.OPT_SORT_KEYS).decode(),
    }


def dedup_key(record: UsageRecord) -> str:
    """The record's identity in ``llm_usage`` (``UsageRecord.dedup_key``)."""
    return record.dedup_key()


def cost_of(record: UsageRecord, catalogue: PriceCatalogue) -> tuple[float, str]:
    """The cost as uploaded, else at the price table's price at the record's moment
    (``PriceCatalogue.price``), else 0 marked unknown; with the cost's source."""
    if record.cost_usd is not None:
        return record.cost_usd, REPORTED
    priced = catalogue.price(record)
    if priced.cost_usd is None:
        return 0.0, UNKNOWN
    return priced.cost_usd, priced.source


def usage_row(tenant_id: str, record: UsageRecord, catalogue: PriceCatalogue, ingested_at: str) -> Row:
    """The record's row; ``ingested_at`` as ``ch_time`` text (one per batch)."""
    cost, source = cost_of(record, catalogue)
    return {
        "tenant_id": tenant_id,
        "ts": ch_time(record.ts),
        "provider": record.provider,
        "model": record.model,
        "workload": record.workload,
        "prompt_tokens": record.prompt_tokens,
        "completion_tokens": record.completion_tokens,
        "cached_tokens": record.cached_tokens,
        "cache_write_tokens": record.cache_write_tokens,
        "reasoning_tokens": record.reasoning_tokens,
        "service_tier": record.service_tier,
        "latency_ms": record.latency_ms,
        "status": record.status,
        "cost_usd": cost,
        "cost_source": source,
        "prompt_hash": record.prompt_hash,
        "request_id": record.request_id,
        "dedup_key": dedup_key(record),
        "ingested_at": ingested_at,
    }
