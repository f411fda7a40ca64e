"""A run is one trace: ids derived from the run, traceparent carried in headers, errors
recorded with their stable code, and log lines that name the span they were written in.
Spans go to an in-memory exporter of a private provider (the process's global provider
is never touched)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode, Tracer, format_span_id, format_trace_id

from apex_contracts import ErrorCode, Unavailable, new_id
from apex_runtime import configure_tracing, log_context, tracing
from apex_runtime.logs import JsonFormatter


@pytest.fixture
def spans() -> Iterator[tuple[Tracer, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(id_generator=tracing.run_id_generator())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("test"), exporter
    provider.shutdown()


def test_a_runs_ids_are_the_same_everywhere_and_differ_between_runs() -> None:
    run, other = new_id("run"), new_id("run")
    assert tracing.run_ids(run) == tracing.run_ids(run)
    assert tracing.run_ids(run) != tracing.run_ids(other)
    trace_id = tracing.run_trace_id(run)
    assert len(trace_id) == 32 and int(trace_id, 16) == tracing.run_ids(run)[0]


def test_a_span_started_in_the_run_context_joins_the_runs_trace(
    spans: tuple[Tracer, InMemorySpanExporter],
) -> None:
    tracer, exporter = spans
    run = new_id("run")
    with tracing.span("invoke_agent triage", context=tracing.run_context(run), using=tracer):
        pass
    (span,) = exporter.get_finished_spans()
    trace_id, root_span_id = tracing.run_ids(run)
    assert span.context.trace_id == trace_id
    assert span.parent is not None and span.parent.span_id == root_span_id


def test_traceparent_travels_in_headers(spans: tuple[Tracer, InMemorySpanExporter]) -> None:
    tracer, exporter = spans
    run = new_id("run")
    headers: dict[str, str] = {"Nats-Msg-Id": "x"}
    with tracing.span("invoke_agent triage", context=tracing.run_context(run), using=tracer) as sender:
        tracing.inject(headers)
    assert headers["traceparent"].startswith(f"00-{format_trace_id(sender.get_span_context().trace_id)}-")
    with tracing.span("execute_tool t", context=tracing.parent_from(headers, run), using=tracer):
        pass
    agent, tool = exporter.get_finished_spans()
    assert tool.parent is not None and tool.parent.span_id == agent.context.span_id
    assert tool.context.trace_id == agent.context.trace_id


def test_a_message_without_traceparent_joins_its_run_or_starts_nothing() -> None:
    run = new_id("run")
    for headers in (None, {}, {"traceparent": "garbage"}):
        context = tracing.parent_from(headers, run)
        assert context is not None
        parent = tracing.trace.get_current_span(context).get_span_context()
        assert parent.trace_id == tracing.run_ids(run)[0]
    assert tracing.parent_from(None, None) is None


def test_nothing_is_injected_without_a_span() -> None:
    headers: dict[str, str] = {}
    tracing.inject(headers)
    assert headers == {}


def test_an_error_is_recorded_with_its_stable_code(spans: tuple[Tracer, InMemorySpanExporter]) -> None:
    tracer, exporter = spans
    with pytest.raises(Unavailable), tracing.span("execute_tool t", using=tracer):
        raise Unavailable("down", code=ErrorCode.STORE_UNAVAILABLE)
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None and span.attributes["error.type"] == "store_unavailable"
    assert [event.name for event in span.events] == ["exception"]


def test_the_run_span_has_the_runs_ids_and_covers_the_run(spans: tuple[Tracer, InMemorySpanExporter]) -> None:
    tracer, exporter = spans
    run = new_id("run")
    ended = datetime(2026, 3, 1, 12, tzinfo=UTC)
    tracing.record_run(
        run,
        started=ended - timedelta(seconds=3),
        ended=ended,
        attributes={"apex.run.status": "failed"},
        error_code="run_timeout",
        using=tracer,
    )
    (span,) = exporter.get_finished_spans()
    assert (span.context.trace_id, span.context.span_id) == tracing.run_ids(run)
    assert span.parent is None and span.name == "invoke_workflow analyst"
    assert span.end_time is not None and span.start_time is not None
    assert span.end_time - span.start_time == 3_000_000_000
    assert span.attributes is not None and span.attributes["error.type"] == "run_timeout"
    assert span.attributes["gen_ai.operation.name"] == "invoke_workflow"
    # only the run's root span takes derived ids: the next one is random
    with tracing.span("next", using=tracer):
        pass
    assert exporter.get_finished_spans()[1].context.trace_id != tracing.run_ids(run)[0]


def test_log_lines_carry_the_current_spans_ids(spans: tuple[Tracer, InMemorySpanExporter]) -> None:
    tracer, _ = spans
    formatter = JsonFormatter("agents")

    def line() -> dict[str, str]:
        record = logging.LogRecord("apex", logging.INFO, __file__, 1, "hello", None, None)
        return orjson.loads(formatter.format(record))  # type: ignore[no-any-return]

    assert "trace_id" not in line()
    with log_context(tenant_id="ten_1", run_id="run_1"), tracing.span("s", using=tracer) as current:
        entry = line()
    ids = current.get_span_context()
    assert entry["trace_id"] == format_trace_id(ids.trace_id)
    assert entry["span_id"] == format_span_id(ids.span_id)
    assert entry["tenant_id"] == "ten_1" and entry["run_id"] == "run_1"


def test_without_an_endpoint_nothing_is_exported() -> None:
    assert configure_tracing("tools", None).exporting is False
    assert configure_tracing("tools", "").exporting is False
    assert tracing.traces_url("http://collector:4318/") == "http://collector:4318/v1/traces"
    assert tracing.traces_url("http://c:4318/v1/traces") == "http://c:4318/v1/traces"
