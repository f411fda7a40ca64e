"""Provider connectors over the real stack against scripted OpenAI and Anthropic usage
APIs on loopback: a tenant admin connects once (a bad key is refused before anything is
stored, the good one is stored sealed), the schedule pulls the complete days page by
page into llm_usage, the next sync pulls only new days, a pull of the same days again
is all duplicates, every failure is a typed error in the visible state, and with two
replicas one sync runs per connector at a time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from apex_contracts.streams import KV_CONNECTORS
from tests.integration.ingest.conftest import Slice, Tenant
from tests.integration.ingest.scripted_openai import serving
from tests.integration.ingest.scripted_providers import ScriptedAnthropicUsage, ScriptedOpenAIUsage, day

OPENAI_KEY = "sk-admin-scripted-openai-0001"
ANTHROPIC_KEY = "sk-ant-admin01-scripted-0002"


def today() -> datetime:
    return day(datetime.now(UTC))


def openai_usage() -> dict[datetime, list[dict[str, Any]]]:
    """Three past days: two projects, a batch group, a flex group."""
    out = {}
    for back in (3, 2, 1):
        out[today() - timedelta(days=back)] = [
            {
                "model": "gpt-4o-mini-2024-07-18",
                "project_id": "proj_support",
                "batch": False,
                "service_tier": "default",
                "num_model_requests": 7 + back,
                "input_tokens": 70_001 * back,
                "input_cached_tokens": 20_000,
                "output_tokens": 9_003,
            },
            {
                "model": "gpt-4o",
                "project_id": "proj_reports",
                "batch": True,
                "service_tier": None,
                "num_model_requests": 3,
                "input_tokens": 30_000,
                "input_cached_tokens": 0,
                "output_tokens": 6_001,
            },
            {
                "model": "gpt-4.1-mini",
                "project_id": None,
                "batch": False,
                "service_tier": "flex",
                "num_model_requests": 2,
                "input_tokens": 1_001,
                "output_tokens": 11,
            },
        ]
    return out


def anthropic_usage() -> dict[datetime, list[dict[str, Any]]]:
    return {
        today() - timedelta(days=back): [
            {
                "uncached_input_tokens": 10_000 * back,
                "cache_creation": {"ephemeral_5m_input_tokens": 2_000, "ephemeral_1h_input_tokens": 500},
                "cache_read_input_tokens": 40_000,
                "output_tokens": 3_000,
                "server_tool_use": {"web_search_requests": 0},
                "api_key_id": None,
                "workspace_id": "wrkspc_research",
                "model": "claude-sonnet-4-20250514",
                "service_tier": "standard",
                "context_window": None,
            },
            {
                "uncached_input_tokens": 1_000,
                "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
                "cache_read_input_tokens": 0,
                "output_tokens": 200,
                "workspace_id": None,
                "model": "claude-3-5-haiku-20241022",
                "service_tier": "batch",
            },
        ]
        for back in (2, 1)
    }


@pytest.fixture
async def openai_api() -> AsyncIterator[tuple[ScriptedOpenAIUsage, str]]:
    api = ScriptedOpenAIUsage(key=OPENAI_KEY, usage=openai_usage())
    async with serving(api.app()) as url:
        yield api, f"{url}/v1"


@pytest.fixture
async def anthropic_api() -> AsyncIterator[tuple[ScriptedAnthropicUsage, str]]:
    api = ScriptedAnthropicUsage(key=ANTHROPIC_KEY, usage=anthropic_usage())
    async with serving(api.app()) as url:
        yield api, url


async def connect(
    http: httpx.AsyncClient, tenant: Tenant, provider: str, key: str, base_url: str, **extra: Any
) -> httpx.Response:
    body = {"admin_key": key, "base_url": base_url, "backfill_days": 7, **extra}
    return await http.put(f"/api/v1/usage/connectors/{provider}", json=body, headers=tenant.headers)


async def synced(
    http: httpx.AsyncClient, tenant: Tenant, provider: str, timeout: float = 30
) -> dict[str, Any]:
    """The connector once a sync has finished (the schedule runs every 0.2 s here)."""
    async with asyncio.timeout(timeout):
        while True:
            view = (await http.get(f"/api/v1/usage/connectors/{provider}", headers=tenant.headers)).json()
            if view["state"]["status"] != "never":
                return view  # type: ignore[no-any-return]
            await asyncio.sleep(0.1)


async def usage_rows(stack: Slice, tenant: Tenant, count: int) -> list[dict[str, Any]]:
    async with asyncio.timeout(60):
        while True:
            rows = await stack.analytics.select(
                "SELECT model, workload, prompt_tokens, completion_tokens, cached_tokens, cache_write_tokens, "
                "service_tier, latency_ms, toDate(ts) AS day FROM $db.llm_usage FINAL "
                "WHERE tenant_id = {t:String}",
                {"t": tenant.tenant_id},
            )
            if len(rows) >= count:
                return rows
            await asyncio.sleep(0.2)


async def test_a_bad_key_is_refused_before_anything_is_stored(
    stack: Slice, http: httpx.AsyncClient, openai_api: tuple[ScriptedOpenAIUsage, str]
) -> None:
    tenant = stack.tenant()
    api, url = openai_api
    refused = await connect(http, tenant, "openai", "sk-admin-wrong-key", url)
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "provider_auth_failed"
    assert refused.json()["error"]["retryable"] is False
    listed = await http.get("/api/v1/usage/connectors", headers=tenant.headers)
    assert listed.json() == {"connectors": []}
    outside = await connect(http, tenant, "openai", OPENAI_KEY, "http://10.1.2.3/v1")
    assert outside.status_code == 422 and "not one this platform calls" in outside.json()["error"]["message"]
    member = stack.tenant(roles=("member",))
    assert (await connect(http, member, "openai", OPENAI_KEY, url)).status_code == 403


async def test_openai_usage_is_pulled_on_schedule_page_by_page(
    stack: Slice, http: httpx.AsyncClient, openai_api: tuple[ScriptedOpenAIUsage, str]
) -> None:
    tenant = stack.tenant()
    api, url = openai_api
    response = await connect(http, tenant, "openai", OPENAI_KEY, url)
    assert response.status_code == 200, response.text
    assert response.json()["key_hint"] == "…0001"
    view = await synced(http, tenant, "openai")
    state = view["state"]
    requests = sum(r["num_model_requests"] for results in openai_usage().values() for r in results)
    assert (state["status"], state["error"], state["accepted"], state["duplicates"]) == (
        "ok",
        None,
        requests,
        0,
    )
    assert state["pages"] == 4, "7 days at 2 buckets a page"
    assert datetime.fromisoformat(state["synced_through"]) == today()
    asked = [a for a in api.asked if a.get("limit") == ["31"] and "page" not in a]
    assert asked[-1]["group_by"] == ["model", "project_id", "batch", "service_tier"]
    assert asked[-1]["bucket_width"] == ["1d"]

    rows = await usage_rows(stack, tenant, requests)
    totals: dict[tuple[str, str | None, str | None], list[int]] = {}
    for row in rows:
        key = (row["model"], row["workload"], row["service_tier"])
        acc = totals.setdefault(key, [0, 0, 0, 0])
        acc[0] += 1
        acc[1] += row["prompt_tokens"]
        acc[2] += row["completion_tokens"]
        acc[3] += row["cached_tokens"] or 0
        assert row["latency_ms"] is None
    usage = openai_usage().values()
    assert totals[("gpt-4o-mini-2024-07-18", "proj_support", "default")] == [
        sum(7 + b for b in (3, 2, 1)),
        sum(70_001 * b for b in (3, 2, 1)),
        3 * 9_003,
        3 * 20_000,
    ]
    assert totals[("gpt-4o", "proj_reports", "batch")] == [9, 90_000, 18_003, 0]
    assert totals[("gpt-4.1-mini", None, "flex")] == [6, 3_003, 33, 0]
    assert len(rows) == sum(r["num_model_requests"] for results in usage for r in results)

    stored = await stack.bus.bucket(KV_CONNECTORS)
    raw = (await stored.get(f"{tenant.tenant_id}.openai")).value
    assert OPENAI_KEY.encode() not in raw and b"v1." in raw, "the admin key is stored sealed"


async def test_anthropic_usage_is_pulled_with_cache_reads_and_writes(
    stack: Slice, http: httpx.AsyncClient, anthropic_api: tuple[ScriptedAnthropicUsage, str]
) -> None:
    tenant = stack.tenant()
    api, url = anthropic_api
    assert (await connect(http, tenant, "anthropic", ANTHROPIC_KEY, url)).status_code == 200
    state = (await synced(http, tenant, "anthropic"))["state"]
    assert (state["status"], state["accepted"], state["pages"]) == ("ok", 4, 4)
    asked = [a for a in api.asked if "page" not in a][-1]
    assert asked["group_by[]"] == ["model", "workspace_id", "service_tier"]
    rows = sorted(await usage_rows(stack, tenant, 4), key=lambda r: (str(r["day"]), r["model"]))
    sonnet = [r for r in rows if r["model"] == "claude-sonnet-4-20250514"]
    assert [
        (
            r["prompt_tokens"],
            r["cached_tokens"],
            r["cache_write_tokens"],
            r["completion_tokens"],
            r["service_tier"],
        )
        for r in sonnet
    ] == [
        (20_000 + 40_000 + 2_500, 40_000, 2_500, 3_000, "default"),
        (10_000 + 40_000 + 2_500, 40_000, 2_500, 3_000, "default"),
    ]
    assert {r["workload"] for r in sonnet} == {"wrkspc_research"}
    haiku = [r for r in rows if r["model"] == "claude-3-5-haiku-20241022"]
    assert [(r["prompt_tokens"], r["service_tier"], r["workload"]) for r in haiku] == [
        (1000, "batch", None)
    ] * 2


async def test_the_next_sync_pulls_new_days_only_and_a_pull_again_is_duplicates(
    stack: Slice, http: httpx.AsyncClient, openai_api: tuple[ScriptedOpenAIUsage, str]
) -> None:
    tenant = stack.tenant()
    api, url = openai_api
    assert (await connect(http, tenant, "openai", OPENAI_KEY, url, every_s=86_400)).status_code == 200
    first = (await synced(http, tenant, "openai"))["state"]
    new_day = [
        {
            "model": "gpt-4o",
            "project_id": "proj_new",
            "num_model_requests": 4,
            "input_tokens": 400,
            "output_tokens": 40,
        }
    ]
    api.usage[today()] = new_day
    stack.clock.offset = timedelta(days=1)  # today has ended
    try:
        asked_before = len(api.asked)
        after = (await http.post("/api/v1/usage/connectors/openai/sync", headers=tenant.headers)).json()[
            "state"
        ]
        window = [a for a in api.asked[asked_before:] if "page" not in a]
        assert window and window[0]["start_time"] == [str(int(today().timestamp()))]
        assert (after["status"], after["accepted"], after["duplicates"]) == ("ok", 4, 0)
        assert datetime.fromisoformat(after["synced_through"]) == today() + timedelta(days=1)

        # connected again from scratch: the same days once more are all duplicates
        assert (
            await http.delete("/api/v1/usage/connectors/openai", headers=tenant.headers)
        ).status_code == 204
        assert (await connect(http, tenant, "openai", OPENAI_KEY, url, every_s=86_400)).status_code == 200
        again = (await http.post("/api/v1/usage/connectors/openai/sync", headers=tenant.headers)).json()[
            "state"
        ]
        assert (again["status"], again["accepted"], again["duplicates"]) == ("ok", 0, first["accepted"] + 4)
    finally:
        stack.clock.offset = timedelta()


async def test_provider_failures_are_typed_errors_in_the_visible_state(
    stack: Slice, http: httpx.AsyncClient, openai_api: tuple[ScriptedOpenAIUsage, str]
) -> None:
    tenant = stack.tenant()
    api, url = openai_api
    assert (await connect(http, tenant, "openai", OPENAI_KEY, url, every_s=86_400)).status_code == 200
    await synced(http, tenant, "openai")
    await http.delete("/api/v1/usage/connectors/openai", headers=tenant.headers)
    assert (await connect(http, tenant, "openai", OPENAI_KEY, url, every_s=86_400)).status_code == 200

    async def sync_now() -> dict[str, Any]:
        response = await http.post("/api/v1/usage/connectors/openai/sync", headers=tenant.headers)
        assert response.status_code == 200, response.text
        return response.json()["state"]  # type: ignore[no-any-return]

    api.failures = [(429, {"Retry-After": "120"})]
    state = await sync_now()
    assert (state["status"], state["error"]["code"], state["error"]["retryable"]) == (
        "error",
        "provider_rate_limited",
        True,
    )
    wait = datetime.fromisoformat(state["next_sync_at"]) - datetime.fromisoformat(state["last_attempt_at"])
    assert wait == timedelta(seconds=120)
    api.failures = [(503, {})]
    state = await sync_now()
    assert (state["error"]["code"], state["error"]["retryable"]) == ("provider_unavailable", True)
    wait = datetime.fromisoformat(state["next_sync_at"]) - datetime.fromisoformat(state["last_attempt_at"])
    assert wait == timedelta(minutes=5)
    api.key = "sk-admin-rotated-elsewhere"  # the admin revoked the key at the provider
    state = await sync_now()
    assert (state["error"]["code"], state["error"]["retryable"]) == ("provider_auth_failed", False)
    api.key = OPENAI_KEY
    recovered = await sync_now()
    assert (recovered["status"], recovered["error"]) == ("ok", None)
    assert recovered["accepted"] == 0 and recovered["duplicates"] > 0, "the days pulled before are duplicates"
    metrics = (await http.get("/metrics")).text
    for outcome in ("ok", "provider_rate_limited", "provider_unavailable", "provider_auth_failed"):
        assert f'apex_ingest_connector_syncs_total{{outcome="{outcome}",provider="openai"}}' in metrics
    assert 'apex_ingest_records_total{outcome="duplicate",source="openai"}' in metrics


async def test_one_sync_per_connector_however_many_replicas(
    stack: Slice, openai_api: tuple[ScriptedOpenAIUsage, str]
) -> None:
    second = await stack.start_ingest()
    tenant = stack.tenant()
    api, url = openai_api
    clients = [httpx.AsyncClient(base_url=stack.url(s), timeout=60) for s in (stack.ingest, second)]
    try:
        week = 7 * 86_400
        assert (await connect(clients[0], tenant, "openai", OPENAI_KEY, url, every_s=week)).status_code == 200
        await synced(clients[0], tenant, "openai")
        await asyncio.sleep(1.0)  # both replicas poll every 0.2 s: give them time to try
        backfill = str(int((today() - timedelta(days=7)).timestamp()))
        first_pages = [a for a in api.asked if "page" not in a and a["start_time"] == [backfill]]
        assert len(first_pages) == 1, "the due connector was synced once, by one replica"

        stack.clock.offset = timedelta(days=2)  # two new days to pull, the next scheduled sync still far
        api.delay_s = 0.3  # a slow provider: the syncs would overlap
        api.most_at_once = 0
        answers = await asyncio.gather(
            *(c.post("/api/v1/usage/connectors/openai/sync", headers=tenant.headers) for c in clients)
        )
        assert sorted(a.status_code for a in answers) == [200, 409]
        conflict = next(a for a in answers if a.status_code == 409).json()["error"]
        assert conflict["code"] == "conflict"
        assert api.most_at_once == 1
    finally:
        stack.clock.offset = timedelta()
        api.delay_s = 0.0
        for client in clients:
            await client.aclose()
        stack.services.remove(second)
        await second.stop()
