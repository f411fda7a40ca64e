"""OpenAI's organisation usage API for completions (``GET /organization/usage/completions``
with an admin key): daily buckets grouped by model, project, batch and service tier,
paged by ``next_page``.

A group of N requests becomes N records (the request count is the provider's own), its
tokens shared out exactly (the remainder goes to the first records), all at the start
of the day, without latency. OpenAI counts cached input inside ``input_tokens``, as Apex
does. Each record's ``request_id`` is derived from the day, the group and its position,
so a day pulled again is a duplicate."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncGenerator, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import ValidationError

from apex_contracts import UsageRecord
from apex_ingest.connectors.http import get_page, next_page
from apex_ingest.connectors.model import Window
from apex_ingest.parsing import SERVICE_TIERS, Rejected, Row
from apex_ingest.parsing import reason_of as _reason

PATH = "/organization/usage/completions"
GROUP_BY = ("model", "project_id", "batch", "service_tier")
MAX_DAYS_PER_PAGE = 31  # the API's limit for daily buckets


async def pages(
    http: httpx.AsyncClient, base_url: str, admin_key: str, window: Window, *, limit: int = MAX_DAYS_PER_PAGE
) -> AsyncGenerator[dict[str, Any]]:
    params: list[tuple[str, str | int | float | bool | None]] = [
        ("start_time", str(int(window.start.timestamp()))),
        ("end_time", str(int(window.end.timestamp()))),
        ("bucket_width", "1d"),
        ("limit", str(limit)),
        *(("group_by", group) for group in GROUP_BY),
    ]
    headers = {"Authorization": f"Bearer {admin_key}"}
    cursor: str | None = None
    while True:
        page = await get_page(
            http,
            base_url.rstrip("/") + PATH,
            params=params + ([("page", cursor)] if cursor else []),
            headers=headers,
            provider="OpenAI",
        )
        yield page
        cursor = next_page(page)
        if cursor is None:
            return


def records(page: dict[str, Any], page_number: int = 1) -> Iterator[Row]:
    """The page's records, one group at a time (a group may hold many requests); a
    group that is not valid usage is rejected, named by its page and bucket."""
    for index, bucket in enumerate(page["data"], start=1):
        try:
            start = datetime.fromtimestamp(int(bucket["start_time"]), UTC)
            results = list(bucket.get("results") or [])
        except (KeyError, TypeError, ValueError, OverflowError, AttributeError) as exc:
            yield Rejected(page_number, f"bucket {index}: {exc!r}")
            continue
        for result in results:
            try:
                yield from _group(start, result)
            except (ValidationError, KeyError, TypeError, ValueError, AttributeError) as exc:
                yield Rejected(page_number, f"bucket {index}: {_reason(exc)}")


def _group(start: datetime, result: dict[str, Any]) -> Iterator[UsageRecord]:
    count = int(result.get("num_model_requests") or 0)
    prompt = int(result.get("input_tokens") or 0)
    completion = int(result.get("output_tokens") or 0)
    cached = int(result.get("input_cached_tokens") or 0)
    if count == 0 and prompt + completion == 0:
        return
    count = max(count, 1)
    tier = (
        "batch" if result.get("batch") else SERVICE_TIERS.get(str(result.get("service_tier") or "").lower())
    )
    model = str(result.get("model") or "unknown")
    project = result.get("project_id")
    group = "\x1f".join(
        str(part) for part in (model, project, result.get("batch"), result.get("service_tier"))
    )
    tag = hashlib.sha256(group.encode()).hexdigest()[:16]
    day = int(start.timestamp())
    for i in range(count):
        yield UsageRecord(
            ts=start,
            provider="openai",
            model=model,
            workload=str(project) if project else None,
            prompt_tokens=_share(prompt, count, i),
            completion_tokens=_share(completion, count, i),
            cached_tokens=_share(cached, count, i) if "input_cached_tokens" in result else None,
            service_tier=tier,
            request_id=f"openai-usage:{day}:{tag}:{i}",
        )


def _share(total: int, count: int, index: int) -> int:
    """Record ``index``'s part of ``total`` over ``count`` records; the parts add up."""
    return total // count + (1 if index < total % count else 0)
