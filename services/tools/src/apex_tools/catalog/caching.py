"""caching_opportunity: prompts sent again and again (same ``prompt_hash``).

Every call after the first of a prompt could read its input from the provider's prompt
cache: the saving is those calls' still-uncached input tokens priced at the cached-input
price instead of the input price. An application-level response cache would avoid the
repeated calls altogether: that is an upper bound (``response_cache_saving_usd``), right
only where the same prompt may get the same answer. Identical prompts have identical
token counts, so a prompt's repeated share is (n - 1) / n of its totals."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

from apex_contracts.tools import CachingInput, CachingResult, CachingRow, RepeatedPrompt
from apex_tools.catalog.common import TenantUsage, monthly, num, share, span_days, usage_filter
from apex_tools.ports import UsageQueries

_MAX_PROMPTS = 10_000
_TOP = 5


async def caching_opportunity(usage: UsageQueries, tenant_id: str, args: CachingInput) -> CachingResult:
    tenant = await TenantUsage.open(usage, tenant_id)
    where = usage_filter(args)
    prompts, models, days = await asyncio.gather(
        tenant.aggregate(
            ["requests", "prompt_tokens", "cached_tokens", "cost_usd"],
            where,
            group_by=["provider", "model", "prompt_hash"],
            min_requests=args.min_repeats,
            order_by="prompt_tokens",
            limit=_MAX_PROMPTS,
        ),
        tenant.aggregate(["requests", "with_prompt_hash"], where, group_by=["provider", "model"], limit=1000),
        span_days(tenant, where),
    )
    repeated = [p for p in prompts if p.get("prompt_hash")]
    rows = [
        _row(
            tenant,
            m,
            [p for p in repeated if (p["provider"], p["model"]) == (m["provider"], m["model"])],
            days,
        )
        for m in models
    ]
    rows = sorted((r for r in rows if r.repeated_requests), key=lambda r: r.monthly_saving_usd, reverse=True)
    requests = sum(int(m["requests"]) for m in models)
    return CachingResult(
        rows=rows,
        top_prompts=_top(repeated),
        span_days=round(days, 3),
        total_saving_usd=sum(r.saving_usd for r in rows),
        total_monthly_saving_usd=sum(r.monthly_saving_usd for r in rows),
        total_monthly_response_cache_saving_usd=sum(r.monthly_response_cache_saving_usd for r in rows),
        hashed_share=share(sum(int(m["with_prompt_hash"] or 0) for m in models), requests),
        truncated=len(prompts) >= _MAX_PROMPTS,
        queries=tenant.citations(),
        price_sources=tenant.price_sources(),
    )


def _row(
    tenant: TenantUsage, model: dict[str, Any], prompts: list[dict[str, Any]], days: float
) -> CachingRow:
    price = tenant.price(model["provider"], model["model"])
    repeats = uncached = 0.0
    repeat_cost = 0.0
    for p in prompts:
        n = int(p["requests"])
        fraction = (n - 1) / n
        repeats += n - 1
        uncached += (int(p["prompt_tokens"]) - int(p["cached_tokens"] or 0)) * fraction
        repeat_cost += num(p["cost_usd"]) * fraction
    input_price = price.input if price else 0.0
    cached_price = price.cached_input if price else None
    saving = uncached * (input_price - cached_price) / 1_000_000 if cached_price is not None else 0.0
    hashed = int(model["with_prompt_hash"] or 0)
    return CachingRow(
        provider=model["provider"],
        model=model["model"],
        requests=int(model["requests"]),
        hashed_requests=hashed,
        repeated_requests=int(repeats),
        repeat_share=share(repeats, hashed),
        repeat_uncached_tokens=round(uncached),
        input_price=input_price,
        cached_price=cached_price,
        saving_usd=saving,
        monthly_saving_usd=monthly(saving, days),
        response_cache_saving_usd=repeat_cost,
        monthly_response_cache_saving_usd=monthly(repeat_cost, days),
    )


def _top(prompts: list[dict[str, Any]]) -> list[RepeatedPrompt]:
    by_hash: dict[tuple[str, str], int] = defaultdict(int)
    for p in prompts:
        by_hash[(str(p["prompt_hash"]), str(p["model"]))] += int(p["requests"])
    ranked = sorted(by_hash.items(), key=lambda item: (-item[1], item[0]))[:_TOP]
    return [RepeatedPrompt(prompt_hash=h, model=m, requests=n) for (h, m), n in ranked]
