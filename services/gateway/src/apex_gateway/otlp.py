"""Usage records from OTLP/HTTP JSON traces (``ExportTraceServiceRequest``) whose spans
follow the OpenTelemetry GenAI semantic conventions.

A span is an LLM call when it names a model (``gen_ai.request.model`` or
``gen_ai.response.model``); other spans are skipped, not rejected. Read from it:
provider (``gen_ai.provider.name``, formerly ``gen_ai.system``), tokens
(``gen_ai.usage.input_tokens`` / ``output_tokens``, formerly ``prompt_tokens`` /
``completion_tokens``; cache reads from ``gen_ai.usage.cache_read.input_tokens``), the
span's start (ts) and duration (latency_ms), status (an error status, or ``error.type``:
timeout and 429 / rate limit are told apart), ``gen_ai.response.id`` (else trace and
span id) as request_id, and the resource's ``service.name`` as the workload."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from apex_gateway.ingest import Rejected, Row, validate_row

PROVIDER_KEYS = ("gen_ai.provider.name", "gen_ai.system")
MODEL_KEYS = ("gen_ai.response.model", "gen_ai.request.model")
INPUT_KEYS = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens")
OUTPUT_KEYS = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens")
CACHED_KEYS = (
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cache_read_input_tokens",
    "gen_ai.usage.input_tokens.cached",
)
STATUS_ERROR = 2


def attributes(items: Any) -> dict[str, Any]:
    """OTLP ``[{key, value: {stringValue|intValue|doubleValue|boolValue}}]`` as a dict."""
    out: dict[str, Any] = {}
    for item in items or []:
        if not isinstance(item, dict) or "key" not in item:
            continue
        value = item.get("value") or {}
        for kind in ("stringValue", "intValue", "doubleValue", "boolValue"):
            if kind in value:
                out[item["key"]] = int(value[kind]) if kind == "intValue" else value[kind]
                break
    return out


def spans(document: Any) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    """(span number, the span's usage record fields or None when it is no LLM call,
    a reason when the span is malformed)."""
    number = 0
    if not isinstance(document, dict) or not isinstance(document.get("resourceSpans"), list):
        raise ValueError('an OTLP trace export is {"resourceSpans": [...]}')
    for resource_spans in document["resourceSpans"]:
        resource = attributes(((resource_spans or {}).get("resource") or {}).get("attributes"))
        for scope_spans in (resource_spans or {}).get("scopeSpans") or []:
            for span in (scope_spans or {}).get("spans") or []:
                number += 1
                try:
                    yield number, _record(span, resource), None
                except (KeyError, TypeError, ValueError) as exc:
                    yield number, None, f"malformed span: {exc}"


def _first(attrs: dict[str, Any], keys: tuple[str, ...]) -> Any:
    return next((attrs[k] for k in keys if k in attrs), None)


def _record(span: dict[str, Any], resource: dict[str, Any]) -> dict[str, Any] | None:
    attrs = attributes(span.get("attributes"))
    model = _first(attrs, MODEL_KEYS)
    if model is None:
        return None
    start, end = int(span["startTimeUnixNano"]), int(span["endTimeUnixNano"])
    return {
        "ts": datetime.fromtimestamp(start / 1e9, UTC).isoformat(),
        "provider": _first(attrs, PROVIDER_KEYS) or "unknown",
        "model": model,
        "workload": resource.get("service.name"),
        "prompt_tokens": _first(attrs, INPUT_KEYS),
        "completion_tokens": _first(attrs, OUTPUT_KEYS) or 0,
        "cached_tokens": _first(attrs, CACHED_KEYS),
        "latency_ms": max(0, round((end - start) / 1e6)),
        "status": _status(span, attrs),
        "request_id": attrs.get("gen_ai.response.id") or f"otlp:{span.get('traceId')}:{span.get('spanId')}",
    }


def _status(span: dict[str, Any], attrs: dict[str, Any]) -> str:
    error = str(attrs.get("error.type") or "").lower()
    code = (span.get("status") or {}).get("code")
    failed = code in (STATUS_ERROR, "STATUS_CODE_ERROR") or bool(error)
    if not failed:
        return "ok"
    if "timeout" in error or "deadline" in error:
        return "timeout"
    if "429" in error or "rate" in error:
        return "rate_limited"
    return "error"


def rows(document: Any) -> Iterator[Row | None]:
    """Each span as a validated record, a rejection, or None (not an LLM call)."""
    for number, fields, problem in spans(document):
        if problem is not None:
            yield Rejected(number, problem)
        elif fields is None:
            yield None
        else:
            yield validate_row(number, fields)
