"""Rows of the analytics tables (pure): an event as a row of ``events``; the cost sources
of ``llm_usage`` (its rows: ``usage_batch.py``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

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
