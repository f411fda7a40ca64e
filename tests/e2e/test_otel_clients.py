"""Usage from clients no one here wrote, through the platform as a user runs it: the
official OpenAI instrumentation (``opentelemetry-instrumentation-openai-v2``) around the
``openai`` client, talking to a scripted OpenAI-compatible server, exports its spans
with the OpenTelemetry SDK's OTLP/HTTP protobuf exporter to the gateway's ``/v1/traces``;
then a chat's report states the calls made: their count, and their cost at list prices
to the cent, per model and in total."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from apex_contracts.pricing import PriceCatalogue
from tests.e2e.platform import Platform
from tests.e2e.wsclient import open_socket, recv, send, until_terminal
from tests.integration.ingest.scripted_openai import Call, ScriptedOpenAI, serving

CALLS = [
    Call("gpt-4o", prompt_tokens=400_000, completion_tokens=60_000),
    Call("gpt-4o-mini", prompt_tokens=900_000, completion_tokens=120_000),
    Call("o3-mini", prompt_tokens=250_000, completion_tokens=300_000),
]
ROUNDS = 4


async def test_instrumented_openai_calls_reach_the_report(platform: Platform) -> None:
    from openai import AsyncOpenAI
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

    user = platform.register()
    provider = TracerProvider(resource=Resource.create({"service.name": "billing-assistant"}))
    exporter = OTLPSpanExporter(
        endpoint=f"{platform.gateway}/v1/traces", headers={"Authorization": f"Bearer {user.access_token}"}
    )
    provider.add_span_processor(BatchSpanProcessor(exporter))
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        async with serving(ScriptedOpenAI(CALLS).app()) as base_url:
            client = AsyncOpenAI(base_url=f"{base_url}/v1", api_key="sk-scripted", max_retries=0)
            for _ in range(ROUNDS):
                for call in CALLS:
                    await client.chat.completions.create(
                        model=call.model, messages=[{"role": "user", "content": "What did we spend?"}]
                    )
            await client.close()
    finally:
        instrumentor.uninstrument()
    assert await asyncio.to_thread(provider.force_flush, 30_000)
    await asyncio.to_thread(provider.shutdown)

    requests = ROUNDS * len(CALLS)
    summary = await _stored(platform, user, requests)
    assert summary["requests"] == requests
    catalogue = PriceCatalogue.default()
    per_model = {
        c.model: ROUNDS * (catalogue.cost_usd("openai", c.model, c.prompt_tokens, c.completion_tokens) or 0)
        for c in CALLS
    }

    report = await _report(platform, user, "Where is my LLM spend going?")
    assert report["requests"] == requests
    assert report["total_cost_usd"] == round(sum(per_model.values()), 2)
    assert {m["model"]: m["cost_usd"] for m in report["by_model"]} == {
        model: round(cost, 2) for model, cost in per_model.items()
    }


async def _stored(platform: Platform, user: Any, requests: int) -> dict[str, Any]:
    async with asyncio.timeout(60):
        while True:
            summary: dict[str, Any] = platform.api(user, "GET", "/api/v1/usage/summary").json()
            if summary.get("requests", 0) >= requests:
                return summary
            await asyncio.sleep(0.3)


async def _report(platform: Platform, user: Any, text: str) -> dict[str, Any]:
    ws = await open_socket(platform.ws_url, user.access_token)
    assert (await recv(ws))["type"] == "session.ready"
    await send(ws, {"type": "message.send", "client_msg_id": uuid.uuid4().hex, "text": text})
    accepted = await recv(ws)
    frames = await until_terminal(ws, accepted["run_id"], timeout=110)
    await ws.close()
    final = frames[-1]["event"]
    assert final["type"] == "run.completed", final
    return final["data"]["response"]["report"]  # type: ignore[no-any-return]


def test_the_gateway_passes_usage_data_in_to_ingest(platform: Platform) -> None:
    user = platform.register()
    spec = platform.api(user, "GET", "/api/v1/ingest/openapi.json").json()
    assert {
        "/api/v1/usage",
        "/api/v1/usage/otlp",
        "/v1/traces",
        "/api/v1/usage/connectors/{provider}",
    } <= set(spec["paths"])
    assert platform.api(user, "GET", "/api/v1/usage/connectors").json() == {"connectors": []}
    refused = platform.api(
        user,
        "PUT",
        "/api/v1/usage/connectors/openai",
        json={"admin_key": "sk-admin-0000-0000", "base_url": "http://169.254.169.254/v1"},
    )
    assert refused.status_code == 422 and "not one this platform calls" in refused.json()["error"]["message"]
