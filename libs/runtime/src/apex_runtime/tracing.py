"""Traces: OpenTelemetry spans that follow the GenAI semantic conventions, exported over
OTLP/HTTP when ``APEX_OTLP_ENDPOINT`` is set. Without it no tracer provider is installed
and every span is the API's non-recording span: tracing then costs a function call.

A run is one trace, whatever happens to the processes that work for it. Its trace id is
derived from the run id (``run_context``), so the orchestrator that resumes a run after
a crash, every agent step and every tool call put their spans in the same trace, even
for a command that arrived without a ``traceparent`` header. Commands carry the W3C
``traceparent`` of the span that sent them in their NATS headers (``inject``,
``parent_from``), which links each span to its parent within that trace. The run's own
root span (``record_run``) has an id derived from the run id too and is exported once,
when the run ends, by whichever orchestrator ends it: a span held open for the whole run
would be lost with the process that held it.
"""

from __future__ import annotations

import contextvars
import hashlib
import logging
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from apex_contracts import ApexError

log = logging.getLogger(__name__)

# GenAI semantic conventions (https://opentelemetry.io/docs/specs/semconv/gen-ai/)
OPERATION = "gen_ai.operation.name"
AGENT_NAME = "gen_ai.agent.name"
TOOL_NAME = "gen_ai.tool.name"
TOOL_CALL_ID = "gen_ai.tool.call.id"
REQUEST_MODEL = "gen_ai.request.model"
PROVIDER = "gen_ai.provider.name"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
FINISH_REASONS = "gen_ai.response.finish_reasons"
CONVERSATION_ID = "gen_ai.conversation.id"
WORKFLOW_NAME = "gen_ai.workflow.name"
ERROR_TYPE = "error.type"
# Apex's own attributes
RUN_ID = "apex.run.id"
TENANT_ID = "apex.tenant.id"
STEP = "apex.step"

INSTRUMENTATION = "apex"
_PROPAGATOR = TraceContextTextMapPropagator()
# ids the next span must take (the run's root span), set only while it is created
_forced_ids: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar(
    "apex_forced_span_ids", default=None
)
_installed: Any = None  # the process's SDK TracerProvider, once a composition root made one


@dataclass(frozen=True)
class Tracing:
    """What ``configure_tracing`` set up; ``flush()`` before the process stops."""

    service: str
    exporting: bool

    def flush(self, timeout_ms: int = 5000) -> None:
        if _installed is not None:
            _installed.force_flush(timeout_ms)


def configure_tracing(service: str, endpoint: str | None) -> Tracing:
    """Installs the process's tracer provider, exporting to ``endpoint`` (an OTLP/HTTP
    base URL such as ``http://collector:4318``; ``/v1/traces`` is added) with
    ``service.name`` = ``service``. Nothing is installed without an endpoint. The first
    call of a process wins (OpenTelemetry has one global provider): services that share a
    process, as in tests, share its provider."""
    global _installed
    if not endpoint:
        return Tracing(service, exporting=False)
    if _installed is None:
        # imported here: a process that does not export never loads the SDK
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider = TracerProvider(
            resource=Resource.create({"service.name": service}), id_generator=run_id_generator()
        )
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=traces_url(endpoint))))
        trace.set_tracer_provider(provider)
        _installed = provider
        log.info("exporting traces to %s", traces_url(endpoint))
    return Tracing(service, exporting=True)


def traces_url(endpoint: str) -> str:
    base = endpoint.rstrip("/")
    return base if base.endswith("/v1/traces") else f"{base}/v1/traces"


def run_id_generator() -> Any:
    """The SDK id generator every Apex tracer provider uses (see ``record_run``)."""
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    class RunIds(RandomIdGenerator):
        """Random ids, except for a run's root span, whose ids come from the run id."""

        def generate_span_id(self) -> int:
            forced = _forced_ids.get()
            return forced[1] if forced else super().generate_span_id()

        def generate_trace_id(self) -> int:
            forced = _forced_ids.get()
            return forced[0] if forced else super().generate_trace_id()

    return RunIds()


def tracer() -> trace.Tracer:
    return trace.get_tracer(INSTRUMENTATION)


# --- a run's trace ------------------------------------------------------------------


def run_ids(run_id: str) -> tuple[int, int]:
    """(trace id, root span id) of a run: the same in every process, for ever."""
    digest = hashlib.blake2b(run_id.encode(), digest_size=24).digest()
    return int.from_bytes(digest[:16], "big") or 1, int.from_bytes(digest[16:], "big") or 1


def run_trace_id(run_id: str) -> str:
    """The run's trace id as it appears in logs and tracing backends (32 hex digits)."""
    return trace.format_trace_id(run_ids(run_id)[0])


def run_context(run_id: str) -> Context:
    """A context whose parent is the run's root span: spans started in it join the run."""
    trace_id, span_id = run_ids(run_id)
    root = SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    return trace.set_span_in_context(NonRecordingSpan(root))


def parent_from(headers: Mapping[str, Any] | None, run_id: str | None) -> Context | None:
    """The context a consumer's span starts in: the sender's ``traceparent`` when the
    message has one, else the run's root span, else a new trace (None)."""
    if headers and "traceparent" in headers:
        context = _PROPAGATOR.extract({k: str(v) for k, v in headers.items()})
        if trace.get_current_span(context).get_span_context().is_valid:
            return context
    return run_context(run_id) if run_id else None


def inject(headers: MutableMapping[str, str]) -> None:
    """Adds the current span's ``traceparent`` to outgoing message headers (nothing when
    no span is recording)."""
    if trace.get_current_span().get_span_context().is_valid:
        _PROPAGATOR.inject(headers)


def record_run(
    run_id: str,
    *,
    started: datetime,
    ended: datetime,
    attributes: Mapping[str, str | int | float],
    error_code: str | None = None,
    using: trace.Tracer | None = None,
) -> None:
    """Exports the run's root span (``invoke_workflow analyst``) with the ids derived
    from the run id, so every span already sent for the run hangs under it."""
    token = _forced_ids.set(run_ids(run_id))
    try:
        span = (using or tracer()).start_span(
            "invoke_workflow analyst",
            context=Context(),
            kind=SpanKind.INTERNAL,
            start_time=_ns(started),
            attributes={OPERATION: "invoke_workflow", WORKFLOW_NAME: "analyst", RUN_ID: run_id, **attributes},
        )
    finally:
        _forced_ids.reset(token)
    if error_code:
        span.set_attribute(ERROR_TYPE, error_code)
        span.set_status(Status(StatusCode.ERROR, error_code))
    span.end(end_time=max(_ns(ended), _ns(started)))


def _ns(at: datetime) -> int:
    return int(at.timestamp() * 1_000_000_000)


# --- spans --------------------------------------------------------------------------


@contextmanager
def span(
    name: str,
    *,
    context: Context | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, str | int | float | bool] | None = None,
    using: trace.Tracer | None = None,
) -> Iterator[Span]:
    """A current span (from the process's tracer, or ``using``); an ``ApexError``
    leaving it is recorded with ``error.type`` = its stable code (any other exception
    with its class name), then re-raised."""
    with (using or tracer()).start_as_current_span(
        name,
        context=context,
        kind=kind,
        attributes=dict(attributes or {}),
        record_exception=False,
        set_status_on_exception=False,
    ) as current:
        try:
            yield current
        except BaseException as exc:
            fail(current, exc)
            raise


def fail(current: Span, exc: BaseException | None = None, *, code: str | None = None) -> None:
    """Marks ``current`` as failed with ``error.type`` = the error's stable code."""
    if not current.is_recording():
        return
    error_type = code or (exc.code if isinstance(exc, ApexError) else type(exc).__qualname__)
    current.set_attribute(ERROR_TYPE, str(error_type))
    current.set_status(Status(StatusCode.ERROR, str(error_type)))
    if exc is not None:
        current.record_exception(exc)


def current_ids() -> tuple[str, str] | None:
    """(trace id, span id) of the current span, for log lines; None when there is none."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return trace.format_trace_id(context.trace_id), trace.format_span_id(context.span_id)
