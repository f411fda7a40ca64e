"""Anthropic's admin usage report for messages (``GET /v1/organizations/usage_report/messages``
with an admin key): daily buckets grouped by model, workspace and service tier, paged
by ``next_page``.

The report has no request count: each group of a day is one record carrying the day's
totals (so request counts and per-call figures of this source are per group, not per
call; token and cost totals are exact). Anthropic counts input without the cache, so
``prompt_tokens`` = uncached + cache reads + cache writes (5-minute and 1-hour writes
added). Each record's ``request_id`` is derived from the day and the group, so a day
pulled again is a duplicate."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncGenerator, Iterator
from datetime import datetime
from typing import Any

import httpx
from pydantic import ValidationError

from apex_contracts import UsageRecord
from apex_ingest.connectors.http import get_page, next_page
from apex_ingest.connectors.model import Window
from apex_ingest.parsing import SERVICE_TIERS, Rejected, Row
from apex_ingest.parsing import reason_of as _reason

PATH = "/v1/organizations/usage_report/messages"
VERSION = "2023-06-01"
GROUP_BY = ("model", "workspace_id", "service_tier")
MAX_DAYS_PER_PAGE = 31
# The report's tier names beyond the common ones.
TIERS = {**SERVICE_TIERS, "priority_on_demand": "priority", "flex_discount": "flex"}


def _rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


async def pages(
    http: httpx.AsyncClient, base_url: str, admin_key: str, window: Window, *, limit: int = MAX_DAYS_PER_PAGE
) -> AsyncGenerator[dict[str, Any]]:
    params: list[tuple[str, str | int | float | bool | None]] = [
        ("starting_at", _rfc3339(window.start)),
        ("ending_at", _rfc3339(window.end)),
        ("bucket_width", "1d"),
        ("limit", str(limit)),
        *(("group_by[]", group) for group in GROUP_BY),
    ]
    headers = {"x-api-key": admin_key, "anthropic-version": VERSION}
    cursor: str | None = None
    while True:
        page = await get_page(
            http,
            base_url.rstrip("/") + PATH,
            params=params + ([("page", cursor)] if cursor else []),
            headers=headers,
            provider="Anthropic",
        )
        yield page
        cursor = next_page(page)
        if cursor is None:
            return


def records(page: dict[str, Any], page_number: int = 1) -> Iterator[Row]:
    """The page's records; a group that is not valid usage is rejected, named by its
    page and bucket."""
    for index, bucket in enumerate(page["data"], start=1):
        try:
            start = datetime.fromisoformat(str(bucket["starting_at"]).replace("Z", "+00:00"))
            results = list(bucket.get("results") or [])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            yield Rejected(page_number, f"bucket {index}: {exc!r}")
            continue
        for result in results:
            try:
                record = _group(start, result)
            except (ValidationError, KeyError, TypeError, ValueError, AttributeError) as exc:
                yield Rejected(page_number, f"bucket {index}: {_reason(exc)}")
                continue
            if record is not None:
                yield record


def _group(start: datetime, result: dict[str, Any]) -> UsageRecord | None:
    uncached = int(result.get("uncached_input_tokens") or 0)
    cache_read = int(result.get("cache_read_input_tokens") or 0)
    creation = result.get("cache_creation") or {}
    cache_write = int(
        (creation.get("ephemeral_5m_input_tokens") or result.get("cache_creation_5m_input_tokens") or 0)
        + (creation.get("ephemeral_1h_input_tokens") or result.get("cache_creation_1h_input_tokens") or 0)
    )
    output = int(result.get("output_tokens") or 0)
    if uncached + cache_read + cache_write + output == 0:
        return None
    model = str(result.get("model") or "unknown")
    workspace = result.get("workspace_id")
    tier = TIERS.get(str(result.get("service_tier") or "").lower())
    group = "\x1f".join(str(part) for part in (model, workspace, result.get("service_tier")))
    tag = hashlib.sha256(group.encode()).hexdigest()[:16]
    return UsageRecord(
        ts=start,
        provider="anthropic",
        model=model,
        workload=str(workspace) if workspace else None,
        prompt_tokens=uncached + cache_read + cache_write,
        completion_tokens=output,
        cached_tokens=cache_read,
        cache_write_tokens=cache_write,
        service_tier=tier,
        request_id=f"anthropic-usage:{int(start.timestamp())}:{tag}",
    )
