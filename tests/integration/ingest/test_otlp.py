"""OTLP the way collectors and SDKs send it, over the real stack: protobuf and JSON, gzip
or not, on ``/v1/traces`` and ``/api/v1/usage/otlp``, answered in the request's encoding
with the partial-success part for rejected spans; and clients no one here wrote: the
OpenTelemetry SDK's OTLP/HTTP exporter, and the official OpenAI instrumentation around
the ``openai`` client talking to a scripted OpenAI-compatible server. The stored usage
matches the calls to the token."""

from __future__ import annotations

import asyncio
import gzip
from typing import Any

import httpx
import orjson
import pytest
from google.rpc.status_pb2 import Status as RpcStatus
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from apex_contracts.pricing import PriceCatalogue
from tests.integration.ingest.conftest import Slice, Tenant
from tests.integration.ingest.otlp_builders import as_json, export, span
from tests.integration.ingest.scripted_openai import Call, ScriptedOpenAI, serving

COLUMNS = (
    "provider, model, workload, prompt_tokens, completion_tokens, cached_tokens, cache_write_tokens, "
    "reasoning_tokens, service_tier, latency_ms, status, request_id"
)


async def stored_rows(stack: Slice, tenant: Tenant, count: int) -> list[dict[str, Any]]:
    """The tenant's llm_usage rows once there are ``count`` of them, by request id."""
    async with asyncio.timeout(60):
        while True:
            found = await stack.analytics.select(
                f"SELECT {COLUMNS} FROM $db.llm_usage FINAL WHERE tenant_id = {{t:String}} ORDER BY request_id",
                {"t": tenant.tenant_id},
            )
            if len(found) >= count:
                return found
            await asyncio.sleep(0.2)


def genai_export() -> Any:
    return export(
        [
            span(
                1,
                {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": "gpt-4o",
                    "gen_ai.response.model": "gpt-4o-2024-08-06",
                    "gen_ai.response.id": "chatcmpl-a",
                    "gen_ai.usage.input_tokens": 1200,
                    "gen_ai.usage.output_tokens": 300,
                    "gen_ai.usage.cache_read.input_tokens": 1024,
                    "gen_ai.usage.reasoning.output_tokens": 200,
                    "openai.response.service_tier": "flex",
                },
            ),
            span(
                2,
                {  # older names, and the input counted without the cache (cache > input)
                    "gen_ai.system": "anthropic",
                    "gen_ai.request.model": "claude-sonnet-4",
                    "gen_ai.usage.prompt_tokens": 100,
                    "gen_ai.usage.completion_tokens": 40,
                    "gen_ai.usage.cache_read_input_tokens": 500,
                    "gen_ai.usage.cache_creation_input_tokens": 300,
                    "gen_ai.openai.request.service_tier": "auto",
                },
                error=True,
            ),
            span(3, {"gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": -5}),  # rejected
            span(4, {"http.route": "/health"}),  # not a model call: skipped
            span(5, {"gen_ai.operation.name": "invoke_agent", "gen_ai.request.model": "gpt-4o"}),  # a sum
        ]
    )


def expected_rows() -> list[dict[str, Any]]:
    return [
        {
            "provider": "openai",
            "model": "gpt-4o-2024-08-06",
            "workload": "checkout-assistant",
            "prompt_tokens": 1200,
            "completion_tokens": 300,
            "cached_tokens": 1024,
            "cache_write_tokens": None,
            "reasoning_tokens": 200,
            "service_tier": "flex",
            "latency_ms": 800,
            "status": "ok",
            "request_id": "chatcmpl-a",
        },
        {
            "provider": "anthropic",
            "model": "claude-sonnet-4",
            "workload": "checkout-assistant",
            "prompt_tokens": 900,
            "completion_tokens": 40,
            "cached_tokens": 500,
            "cache_write_tokens": 300,
            "reasoning_tokens": None,
            "service_tier": None,
            "latency_ms": 800,
            "status": "error",
            "request_id": f"otlp:{2:032x}:{2:016x}",
        },
    ]


@pytest.mark.parametrize(
    ("path", "encoding", "gzipped"),
    [
        ("/v1/traces", "protobuf", False),
        ("/v1/traces", "protobuf", True),
        ("/api/v1/usage/otlp", "json", False),
        ("/v1/traces", "json", True),
    ],
)
async def test_exports_in_either_encoding_store_the_calls_and_name_rejected_spans(
    stack: Slice, http: httpx.AsyncClient, path: str, encoding: str, gzipped: bool
) -> None:
    tenant = stack.tenant()
    request = genai_export()
    body = request.SerializeToString() if encoding == "protobuf" else orjson.dumps(as_json(request))
    headers = {
        **tenant.headers,
        "Content-Type": "application/x-protobuf" if encoding == "protobuf" else "application/json",
    }
    if gzipped:
        body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
    response = await http.post(path, content=body, headers=headers)
    assert response.status_code == 200, response.text
    if encoding == "protobuf":
        assert response.headers["content-type"] == "application/x-protobuf"
        answer = ExportTraceServiceResponse.FromString(response.content)
        rejected, message = answer.partial_success.rejected_spans, answer.partial_success.error_message
    else:
        document = response.json()
        rejected, message = (
            document["partialSuccess"]["rejectedSpans"],
            document["partialSuccess"]["errorMessage"],
        )
        assert (document["accepted"], document["skipped_spans"]) == (2, 2)
    assert rejected == 1 and message.startswith("span 3: prompt_tokens")
    assert await stored_rows(stack, tenant, 2) == expected_rows()
    again = await http.post(path, content=body, headers=headers)  # an exporter's retry
    if encoding == "json":
        assert (again.json()["accepted"], again.json()["duplicates"]) == (0, 2)
    metrics = (await http.get("/metrics")).text
    for outcome in ("accepted", "duplicate", "rejected"):
        assert f'apex_ingest_records_total{{outcome="{outcome}",source="otlp"}}' in metrics


async def test_a_full_export_has_no_partial_success(stack: Slice, http: httpx.AsyncClient) -> None:
    tenant = stack.tenant()
    request = export([span(1, {"gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 10})])
    response = await http.post(
        "/v1/traces",
        content=request.SerializeToString(),
        headers={**tenant.headers, "Content-Type": "application/x-protobuf"},
    )
    assert response.status_code == 200
    assert not ExportTraceServiceResponse.FromString(response.content).HasField("partial_success")


async def test_a_refused_export_is_a_status_in_its_own_encoding(
    stack: Slice, http: httpx.AsyncClient
) -> None:
    tenant = stack.tenant()
    protobuf = {"Content-Type": "application/x-protobuf"}
    garbage = await http.post(
        "/v1/traces", content=b"\x0a\xff\xff\xff", headers={**tenant.headers, **protobuf}
    )
    assert garbage.status_code == 422  # not retryable for an exporter, like 400
    status = RpcStatus.FromString(garbage.content)
    assert status.code == 3 and "invalid_request" in status.message
    unsigned = await http.post("/v1/traces", content=export([]).SerializeToString(), headers=protobuf)
    assert unsigned.status_code == 401 and RpcStatus.FromString(unsigned.content).code == 16
    bomb = gzip.compress(b"\0" * (40 * 1024 * 1024))
    too_big = await http.post(
        "/api/v1/usage/otlp",
        content=bomb,
        headers={**tenant.headers, "Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert too_big.status_code == 413 and too_big.json()["error"]["code"] == "payload_too_large"


def _provider(stack: Slice, tenant: Tenant, service: str) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    exporter = OTLPSpanExporter(
        endpoint=f"{stack.url()}/v1/traces", headers=tenant.headers, compression=Compression.Gzip
    )
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


async def _flush(provider: TracerProvider) -> None:
    # the exporter posts from its own thread to the server running on this loop
    assert await asyncio.to_thread(provider.force_flush, 30_000)
    await asyncio.to_thread(provider.shutdown)


async def test_the_opentelemetry_sdk_exporter_delivers_genai_spans(stack: Slice) -> None:
    tenant = stack.tenant()
    provider = _provider(stack, tenant, "support-bot")
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span(
        "invoke_agent support", attributes={"gen_ai.operation.name": "invoke_agent"}
    ):
        for n in range(3):
            with tracer.start_as_current_span(
                "chat gpt-4o-mini",
                attributes={
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": "gpt-4o-mini",
                    "gen_ai.response.id": f"chatcmpl-sdk-{n}",
                    "gen_ai.usage.input_tokens": 2000 + n,
                    "gen_ai.usage.output_tokens": 100,
                    "gen_ai.usage.cache_read.input_tokens": 1024,
                    "gen_ai.request.service_tier": "priority",
                },
            ):
                pass
    await _flush(provider)
    rows = await stored_rows(stack, tenant, 3)
    assert [(r["request_id"], r["prompt_tokens"], r["cached_tokens"], r["service_tier"]) for r in rows] == [
        (f"chatcmpl-sdk-{n}", 2000 + n, 1024, "priority") for n in range(3)
    ]
    assert {r["workload"] for r in rows} == {"support-bot"}


async def test_the_openai_instrumentation_around_the_openai_client(stack: Slice) -> None:
    from openai import AsyncOpenAI
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

    tenant = stack.tenant()
    calls = [
        Call("gpt-4o-mini", prompt_tokens=300_000, completion_tokens=25_000, cached_tokens=204_800),
        Call("gpt-4o", prompt_tokens=120_000, completion_tokens=40_000),
        Call("gpt-4.1-mini", prompt_tokens=50_000, completion_tokens=5_000, service_tier="flex"),
        Call("o3-mini", prompt_tokens=80_000, completion_tokens=90_000, reasoning_tokens=64_000),
    ]
    scripted = ScriptedOpenAI(calls)
    provider = _provider(stack, tenant, "research-assistant")
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        async with serving(scripted.app()) as base_url:
            client = AsyncOpenAI(base_url=f"{base_url}/v1", api_key="sk-scripted", max_retries=0)
            for call in calls:
                await client.chat.completions.create(
                    model=call.model, messages=[{"role": "user", "content": "Summarise our spend."}]
                )
            await client.close()
    finally:
        instrumentor.uninstrument()
    await _flush(provider)
    rows = await stored_rows(stack, tenant, len(calls))
    by_model = {r["model"]: r for r in rows}
    for call in calls:
        row = by_model[call.model]
        assert (row["provider"], row["prompt_tokens"], row["completion_tokens"], row["status"]) == (
            "openai",
            call.prompt_tokens,
            call.completion_tokens,
            "ok",
        )
        # openai-v2 2.4b0 reports no cached or reasoning counts for chat completions
        assert (row["cached_tokens"], row["reasoning_tokens"]) == (None, None)
        assert row["service_tier"] == call.service_tier
        assert row["request_id"].startswith("chatcmpl-scripted-")
        assert row["workload"] == "research-assistant"
    summary = await stack.stored(tenant, len(calls))
    assert summary["requests"] == len(calls)
    # list prices of the calls at the default tier (a tier's own prices are the catalogue's business)
    catalogue = PriceCatalogue.default()
    costs = {
        c.model: round(catalogue.cost_usd("openai", c.model, c.prompt_tokens, c.completion_tokens) or 0, 2)
        for c in calls
        if c.service_tier == "default"
    }
    assert costs == {"gpt-4o-mini": 0.06, "gpt-4o": 0.7, "o3-mini": 0.48}
    figures = {m["model"]: m["cost_usd"] for m in summary["by_model"]}
    assert {model: figures[model] for model in costs} == costs
