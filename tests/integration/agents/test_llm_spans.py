"""Every language-model call is a ``chat <model>`` span (GenAI semantic conventions)
against a real OpenAI-compatible server on loopback: the model, the provider, the tokens
the server reported, retries inside the one span, and a failure recorded with its stable
error code. Spans go to a private in-memory exporter."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode, Tracer

from apex_agents.llm.client import Breakers, ChatClient, LlmConfig
from apex_contracts import Unavailable
from tests.integration.agents.scripted_llm import Reply, ScriptedLLM, Status, Stream


@pytest.fixture
def spans() -> Iterator[tuple[Tracer, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("test"), exporter
    provider.shutdown()


def _client(llm: ScriptedLLM, http: httpx.AsyncClient, tracer: Tracer) -> ChatClient:
    config = LlmConfig(
        base_url=llm.base_url, model="gpt-4o-mini", max_attempts=2, breaker_threshold=10, backoff_s=0.01
    )
    return ChatClient(config, http, Breakers(10, 30.0), tracer=tracer)


async def test_a_completion_is_one_chat_span_with_its_tokens(
    spans: tuple[Tracer, InMemorySpanExporter],
) -> None:
    tracer, exporter = spans
    replies: list[Reply] = [Status(503), Stream(text=["hi"], prompt_tokens=120, completion_tokens=7)]
    async with ScriptedLLM(lambda _: replies.pop(0)) as llm, httpx.AsyncClient() as http:
        completion = await _client(llm, http, tracer).complete([{"role": "user", "content": "hello"}])
    assert completion.text == "hi"
    (span,) = exporter.get_finished_spans()  # the retry is inside the one call
    assert span.name == "chat gpt-4o-mini" and span.kind is SpanKind.CLIENT
    attributes = dict(span.attributes or {})
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert attributes["gen_ai.provider.name"] == "openai"
    assert attributes["server.address"] == "127.0.0.1"
    assert attributes["gen_ai.usage.input_tokens"] == 120
    assert attributes["gen_ai.usage.output_tokens"] == 7
    assert span.status.status_code is not StatusCode.ERROR


async def test_a_failed_completion_records_its_error_code(spans: tuple[Tracer, InMemorySpanExporter]) -> None:
    tracer, exporter = spans
    async with ScriptedLLM(lambda _: Status(503)) as llm, httpx.AsyncClient() as http:
        with pytest.raises(Unavailable):
            await _client(llm, http, tracer).complete([{"role": "user", "content": "hello"}])
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert (span.attributes or {})["error.type"] == "llm_unavailable"
