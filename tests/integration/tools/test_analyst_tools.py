"""Every analyst tool over the real embedded ClickHouse, on a data set whose answers this
test computes itself from the raw rows (tests/integration/tools/analyst_dataset.py)."""

from __future__ import annotations

import asyncio
from datetime import date, datetime
from typing import Any

import pytest

from apex_contracts.pricing import SIMILAR_TIERS, PriceCatalogue, PriceOverride, TenantPrices
from apex_contracts.tools import TOOL_SPECS, ToolResult
from apex_persistence.analytics.usage import UsageLedger
from apex_tools.registry import default_tools
from tests.integration.tools import analyst_dataset as ds
from tests.integration.tools.conftest import LedgerUsage, load

ROWS = ds.rows()


async def run(usage: LedgerUsage, tenant: str, tool: str, **arguments: Any) -> dict[str, Any]:
    """Runs a tool the way the tools service does: JSON arguments validated by the tool's
    input model, under its timeout; returns the result as JSON."""
    spec = default_tools()[tool]
    args = spec.input_model.model_validate(arguments)
    result: ToolResult = await asyncio.wait_for(spec.run(usage, tenant, args), spec.timeout_s)
    assert isinstance(result, TOOL_SPECS[tool][1])
    assert result.queries and all("llm_usage" in q.sql and tenant not in q.sql for q in result.queries), (
        "cites its SQL, with the tenant as a bound parameter"
    )
    return result.model_dump(mode="json")


@pytest.fixture
async def loaded(ledger: UsageLedger, tenant: str) -> list[dict[str, Any]]:
    await load(ledger, tenant, ROWS)
    return ROWS


async def test_every_tool_has_a_json_schema_and_a_timeout() -> None:
    tools = default_tools()
    assert set(tools) == set(TOOL_SPECS)
    for name, tool in tools.items():
        schema = tool.input_model.model_json_schema()
        assert schema["type"] == "object" and "period" in schema["properties"], name
        assert 0 < tool.timeout_s <= 60


async def test_coverage(usage: LedgerUsage, tenant: str, loaded: list[dict[str, Any]]) -> None:
    got = await run(usage, tenant, "usage_coverage")
    assert got["rows"] == len(loaded)
    first = min(datetime.fromisoformat(r["ts"]) for r in loaded)
    assert datetime.fromisoformat(got["period"]["start"]) == first
    assert got["fields_present"]["latency_ms"] == len(loaded)
    assert got["fields_present"]["cost_usd"] == sum(1 for r in loaded if "cost_usd" in r)
    assert got["fields_missing"] == []
    assert got["unpriced_models"] == ["acme-ft-1"]
    assert got["span_days"] == round(ds.span_days(loaded), 3)
    assert {m["model"]: m["requests"] for m in got["models"]} == {
        k[0]: len(v) for k, v in ds.group(loaded, "model").items()
    }


@pytest.mark.parametrize("dimension", ["model", "workload", "provider", "day"])
async def test_cost_breakdown(
    usage: LedgerUsage, tenant: str, loaded: list[dict[str, Any]], dimension: str
) -> None:
    got = await run(usage, tenant, "cost_breakdown", group_by=dimension)

    def bucket(row: dict[str, Any]) -> str:
        return row["ts"][:10] if dimension == "day" else row[dimension]

    expected: dict[str, float] = {}
    for row in loaded:
        expected[bucket(row)] = expected.get(bucket(row), 0.0) + ds.cost(row)
    assert {r["key"]: r["cost_usd"] for r in got["rows"]} == {k: ds.cents(v) for k, v in expected.items()}
    assert got["total_cost_usd"] == ds.cents(sum(ds.cost(r) for r in loaded))
    assert got["requests"] == len(loaded)
    if dimension != "day":
        costs = [r["cost_usd"] for r in got["rows"]]
        assert costs == sorted(costs, reverse=True), "costliest first"


async def test_latency_profile(usage: LedgerUsage, tenant: str, loaded: list[dict[str, Any]]) -> None:
    got = await run(usage, tenant, "latency_profile", group_by="workload")
    for row in got["rows"]:
        latencies = [r["latency_ms"] for r in loaded if r["workload"] == row["key"]]
        assert (row["p50_ms"], row["p95_ms"], row["p99_ms"]) == tuple(
            round(ds.pct(latencies, level)) for level in (50, 95, 99)
        ), row["key"]


async def test_model_substitution(usage: LedgerUsage, tenant: str, loaded: list[dict[str, Any]]) -> None:
    got = await run(usage, tenant, "model_substitution")
    catalogue = PriceCatalogue.default()
    days = ds.span_days(loaded)
    expected = {}
    for (workload, provider, model), rows in ds.group(loaded, "workload", "provider", "model").items():
        price = ds.price_of(provider, model)
        if price is None:
            continue
        tokens = (
            sum(r["prompt_tokens"] for r in rows),
            sum(r["cached_tokens"] for r in rows),
            sum(r["completion_tokens"] for r in rows),
        )
        now = ds.list_cost(price, *tokens)
        same, lower = SIMILAR_TIERS[price["tier"]]
        best = None
        for tiers, similar in ((same, True), (lower, False)):
            options = [
                (ds.list_cost(m.model_dump(), *tokens), m.model)
                for m in catalogue.models()
                if m.provider == price["provider"]
                and not m.legacy
                and m.model != price["model"]
                and m.tier in tiers
            ]
            options = [o for o in options if (now - o[0]) / now >= 0.1]
            if options:
                best = (*min(options), similar)
                break
        if best is not None:
            saving = sum(ds.cost(r) for r in rows) * (now - best[0]) / now
            expected[(workload, model)] = (
                best[1],
                best[2],
                ds.cents(saving),
                ds.cents(ds.monthly(saving, days)),
            )
    assert {
        (r["workload"], r["model"]): (
            r["alternative"],
            r["similar"],
            r["saving_usd"],
            r["monthly_saving_usd"],
        )
        for r in got["rows"]
    } == expected
    assert expected[("code-review", "claude-opus-4-1")][:2] == ("claude-opus-4-5", True)
    assert expected[("nightly-report", "claude-sonnet-4")][:2] == ("claude-haiku-4-5", False)
    assert got["unpriced_models"] == ["acme-ft-1"]
    assert got["total_monthly_saving_usd"] == ds.cents(sum(r["monthly_saving_usd"] for r in got["rows"]))
    review = next(r for r in got["rows"] if r["workload"] == "code-review")
    assert review["p50_ms"] == round(
        ds.pct([r["latency_ms"] for r in loaded if r["workload"] == "code-review"], 50)
    )
    assert review["latency_effect"] == "not measured yet (you do not use it)", (
        "the tenant never used claude-opus-4-5"
    )


async def test_caching_opportunity(usage: LedgerUsage, tenant: str, loaded: list[dict[str, Any]]) -> None:
    got = await run(usage, tenant, "caching_opportunity")
    days = ds.span_days(loaded)
    expected = {}
    for (model,), rows in ds.group(loaded, "model").items():
        repeats = uncached = repeat_cost = 0.0
        for _hash, same in ds.group(rows, "prompt_hash").items():
            n = len(same)
            if n < 2:
                continue
            repeats += n - 1
            uncached += sum(r["prompt_tokens"] - r["cached_tokens"] for r in same) * (n - 1) / n
            repeat_cost += sum(ds.cost(r) for r in same) * (n - 1) / n
        price = ds.price_of(rows[0]["provider"], model)
        if repeats and price:
            saving = (
                uncached * (price["input"] - price["cached_input"]) / 1e6
                if price["cached_input"] is not None
                else 0.0
            )
            expected[model] = (
                int(repeats),
                ds.cents(saving),
                ds.cents(ds.monthly(saving, days)),
                ds.cents(ds.monthly(repeat_cost, days)),
            )
    assert {
        r["model"]: (
            r["repeated_requests"],
            r["saving_usd"],
            r["monthly_saving_usd"],
            r["monthly_response_cache_saving_usd"],
        )
        for r in got["rows"]
    } == expected
    assert set(expected) == {"gpt-4o", "gpt-4o-mini", "gemini-2.5-flash"}
    assert got["hashed_share"] == 1.0 and not got["truncated"]
    assert got["top_prompts"][0]["requests"] == max(
        len(v) for v in ds.group(loaded, "prompt_hash", "model").values()
    )


async def test_batch_opportunity(usage: LedgerUsage, tenant: str, loaded: list[dict[str, Any]]) -> None:
    got = await run(usage, tenant, "batch_opportunity", tolerant_workloads=["fine-tuned"])
    days = ds.span_days(loaded)
    reasons = {r["workload"]: r["reason"] for r in got["rows"]}
    # "fine-tuned" is named, but its model has no published batch discount to apply
    assert reasons == {
        "nightly-report": "its name says it is offline work",
        "extraction": "most of its calls run at night (UTC), like a scheduled job",
    }
    for row in got["rows"]:
        rows = [r for r in loaded if r["workload"] == row["workload"]]
        spend = sum(ds.cost(r) for r in rows)
        assert row["saving_usd"] == ds.cents(spend * 0.5)
        assert row["monthly_saving_usd"] == ds.cents(ds.monthly(spend * 0.5, days))
    night = [r for r in loaded if r["workload"] == "extraction"]
    extraction = next(r for r in got["rows"] if r["workload"] == "extraction")
    assert extraction["off_hours_share"] == round(
        sum(1 for r in night if datetime.fromisoformat(r["ts"]).hour < 6) / len(night), 4
    )


async def test_error_waste(usage: LedgerUsage, tenant: str, loaded: list[dict[str, Any]]) -> None:
    got = await run(usage, tenant, "error_waste")
    failed = [r for r in loaded if r["status"] != "ok"]
    days = ds.span_days(loaded)
    assert got["failed"] == len(failed) and got["requests"] == len(loaded)
    assert got["total_saving_usd"] == ds.cents(sum(ds.cost(r) for r in failed))
    assert got["total_monthly_saving_usd"] == ds.cents(ds.monthly(sum(ds.cost(r) for r in failed), days))
    by_workload = {r["workload"]: r for r in got["rows"]}
    for (workload,), rows in ds.group(failed, "workload").items():
        row = by_workload[workload]
        assert row["failed"] == len(rows)
        assert row["wasted_cost_usd"] == ds.cents(sum(ds.cost(r) for r in rows))
        assert (row["errors"], row["rate_limited"], row["timeouts"]) == tuple(
            sum(1 for r in rows if r["status"] == s) for s in ("error", "rate_limited", "timeout")
        )
    assert set(by_workload) == {r["workload"] for r in failed}


async def test_prompt_outliers(usage: LedgerUsage, tenant: str, loaded: list[dict[str, Any]]) -> None:
    got = await run(usage, tenant, "prompt_outliers", factor=3)
    days = ds.span_days(loaded)
    expected = {}
    for (workload,), rows in ds.group(loaded, "workload").items():
        p50 = ds.median([r["prompt_tokens"] for r in rows])
        limit = ds.floor(p50 * 3)
        out = [r for r in rows if r["prompt_tokens"] > limit]
        if not out:
            continue
        price = ds.price_of(out[0]["provider"], out[0]["model"])
        excess = sum(r["prompt_tokens"] - p50 for r in out)
        saving = excess * (price["input"] if price else 0) / 1e6
        expected[workload] = (
            len(out),
            limit,
            round(excess),
            ds.cents(saving),
            ds.cents(ds.monthly(saving, days)),
        )
    assert {
        r["workload"]: (
            r["outliers"],
            r["threshold_tokens"],
            r["excess_tokens"],
            r["saving_usd"],
            r["monthly_saving_usd"],
        )
        for r in got["rows"]
    } == expected
    assert {"code-review", "rag"} <= set(expected)


async def test_growth_projection(usage: LedgerUsage, tenant: str, loaded: list[dict[str, Any]]) -> None:
    observed = await run(usage, tenant, "growth_projection")
    given = await run(usage, tenant, "growth_projection", monthly_growth_pct=25)
    daily: dict[str, float] = {}
    for row in loaded:
        daily[row["ts"][:10]] = daily.get(row["ts"][:10], 0.0) + ds.cost(row)
    series = [ds.cents(daily[d]) for d in sorted(daily)]
    assert [d["cost_usd"] for d in observed["daily"]] == series
    assert observed["days_observed"] == ds.DAYS
    mean = sum(series) / len(series)
    n = len(series)
    slope = sum((t - (n - 1) / 2) * (v - mean) for t, v in enumerate(series)) / sum(
        (t - (n - 1) / 2) ** 2 for t in range(n)
    )
    trend = round(slope * 30 / mean * 100, 1)
    assert observed["observed_monthly_growth_pct"] == trend > 0, "the data set grows"
    assert observed["current_monthly_cost_usd"] == ds.cents(mean * 30)
    assert observed["projected_next_month_cost_usd"] == ds.cents(mean * 30 * (1 + trend / 100))
    assert given["growth_source"] == "given"
    assert given["projected_next_month_cost_usd"] == ds.cents(mean * 30 * 1.25)
    assert date.fromisoformat(observed["daily"][0]["day"]) == ds.START.date()


async def test_a_period_and_model_filter_narrow_every_figure(
    usage: LedgerUsage, tenant: str, loaded: list[dict[str, Any]]
) -> None:
    start, end = "2026-01-05T00:00:00Z", "2026-01-12T00:00:00Z"
    got = await run(
        usage,
        tenant,
        "cost_breakdown",
        group_by="workload",
        period={"start": start, "end": end},
        models=["gpt-4o"],
    )
    inside = [r for r in loaded if "2026-01-05" <= r["ts"][:10] < "2026-01-12" and r["model"] == "gpt-4o"]
    assert got["requests"] == len(inside)
    assert got["total_cost_usd"] == ds.cents(sum(ds.cost(r) for r in inside))


async def test_tenant_price_overrides_reprice_history_but_never_uploaded_costs(
    usage: LedgerUsage, tenant: str, loaded: list[dict[str, Any]]
) -> None:
    before = await run(usage, tenant, "cost_breakdown", group_by="model")
    usage.tenant_prices[tenant] = TenantPrices(
        overrides=[
            PriceOverride(provider="openai", model="gpt-4o", input=1.0, output=4.0),
            PriceOverride(provider="acme", model="acme-ft-1", input=100.0, output=100.0),
        ]
    )
    after = await run(usage, tenant, "cost_breakdown", group_by="model")
    costs = {r["key"]: r["cost_usd"] for r in after["rows"]}
    catalogue = PriceCatalogue.default().with_overrides(usage.tenant_prices[tenant].overrides)
    gpt4o = [r for r in loaded if r["model"] == "gpt-4o"]
    assert costs["gpt-4o"] == ds.cents(sum(ds.cost(r, catalogue) for r in gpt4o))
    assert costs["gpt-4o"] < {r["key"]: r["cost_usd"] for r in before["rows"]}["gpt-4o"]
    assert costs["acme-ft-1"] == ds.cents(sum(r["cost_usd"] for r in loaded if r["model"] == "acme-ft-1")), (
        "an uploaded cost is what the tenant paid: never repriced"
    )
    assert costs["gpt-4o-mini"] == {r["key"]: r["cost_usd"] for r in before["rows"]}["gpt-4o-mini"]
    substitution = await run(usage, tenant, "model_substitution")
    support = next(r for r in substitution["rows"] if r["workload"] == "support-chat")
    tokens = [sum(x[f] for x in gpt4o) for f in ("prompt_tokens", "cached_tokens", "completion_tokens")]
    assert support["list_cost_usd"] == ds.cents(
        ds.list_cost({"input": 1.0, "cached_input": None, "output": 4.0}, *tokens)
    ), "savings are at the tenant's own prices"
    assert not support["similar"], "no frontier model is cheaper than the negotiated price"


async def test_tools_answer_an_empty_tenant_with_zeros(usage: LedgerUsage, tenant: str) -> None:
    for name in TOOL_SPECS:
        got = await run(usage, tenant, name)
        assert got.get("rows") in (0, [], None), name


async def test_ingest_prices_each_record_at_its_own_moment_and_names_what_priced_it(
    usage: LedgerUsage, tenant: str, ledger: UsageLedger
) -> None:
    """Through the real ledger and ClickHouse: o3 at its price before and after its price
    cut (2025-06-10), a batch call at the batch price, cache writes at their price, an
    unknown model unpriced (not $0 silently: its source says so), and a tenant override
    naming itself."""
    base = {"provider": "openai", "prompt_tokens": 1_000_000, "completion_tokens": 0, "workload": "w"}
    rows = [
        {**base, "ts": "2025-06-01T12:00:00Z", "model": "o3", "request_id": "o3-before"},
        {**base, "ts": "2025-06-11T12:00:00Z", "model": "o3", "request_id": "o3-after"},
        {
            **base,
            "ts": "2025-06-11T12:00:00Z",
            "model": "gpt-4o",
            "service_tier": "batch",
            "request_id": "batch",
        },
        {
            **base,
            "ts": "2025-06-11T12:00:00Z",
            "provider": "anthropic",
            "model": "claude-sonnet-4-5-20250929",
            "prompt_tokens": 160_000,  # below its long-context band (200k)
            "cache_write_tokens": 160_000,
            "request_id": "cache-write",
        },
        {
            **base,
            "ts": "2025-06-11T12:00:00Z",
            "provider": "acme",
            "model": "acme-9",
            "request_id": "unknown",
        },
    ]
    await load(ledger, tenant, rows)
    got = await run(usage, tenant, "cost_breakdown", group_by="model")
    costs = {r["key"]: (r["cost_usd"], r["price_sources"]) for r in got["rows"]}
    table = ["genai-prices 0.2.3"]
    assert costs["o3"] == (10.0 + 2.0, table), "$10 per million input tokens before the cut, $2 after"
    assert costs["gpt-4o"] == (1.25, table), "the batch price: half of $2.50"
    assert costs["claude-sonnet-4-5-20250929"] == (0.6, table), "cache writes at $3.75 per million"
    assert costs["acme-9"] == (0.0, ["unpriced"])
    assert got["price_sources"] == sorted([*table, "unpriced"])
    coverage = await run(usage, tenant, "usage_coverage")
    assert coverage["unpriced_models"] == ["acme-9"]

    usage.tenant_prices[tenant] = TenantPrices(
        overrides=[PriceOverride(provider="acme", model="acme-9", input=4.0, output=4.0)]
    )
    after = await run(usage, tenant, "cost_breakdown", group_by="model")
    assert {r["key"]: (r["cost_usd"], r["price_sources"]) for r in after["rows"]}["acme-9"] == (
        4.0,
        ["tenant override"],
    )
