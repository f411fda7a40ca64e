"""A GenAI span's attributes as a usage record.

A span is a model call when it names a model (``gen_ai.response.model`` or
``gen_ai.request.model``) and its operation is not an agent's or a tool's (those spans
carry the totals of the calls under them, which would count twice). Every key is read
under its current semantic-convention name first, then the older names instrumentations
still emit. Token counts follow Apex's convention: ``prompt_tokens`` is every input token,
cache reads and writes included, and ``reasoning_tokens`` are part of
``completion_tokens``, as the conventions define ``gen_ai.usage.input_tokens`` and
``output_tokens``; an instrumentation that reports them the other way (cache counts
above the input count, reasoning above the output) is recognised and its counts added.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from apex_ingest.otlp.decode import SpanData
from apex_ingest.parsing import SERVICE_TIERS, Rejected, Row, validate_row

PROVIDER_KEYS = ("gen_ai.provider.name", "gen_ai.system")
MODEL_KEYS = ("gen_ai.response.model", "gen_ai.request.model")
INPUT_KEYS = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.usage.prompt_tokens")
OUTPUT_KEYS = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens", "llm.usage.completion_tokens")
CACHE_READ_KEYS = (
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cache_read_input_tokens",
    "gen_ai.usage.input_tokens.cached",
    "gen_ai.usage.cached_tokens",
)
CACHE_WRITE_KEYS = (
    "gen_ai.usage.cache_creation.input_tokens",
    "gen_ai.usage.cache_creation_input_tokens",
    "gen_ai.usage.input_tokens.cache_write",
)
REASONING_KEYS = (
    "gen_ai.usage.reasoning.output_tokens",
    "gen_ai.usage.reasoning_tokens",
    "gen_ai.usage.output_tokens.reasoning",
)
# The tier the call was billed at (the response's) before the one asked for.
SERVICE_TIER_KEYS = (
    "openai.response.service_tier",
    "gen_ai.openai.response.service_tier",
    "gen_ai.response.service_tier",
    "openai.request.service_tier",
    "gen_ai.openai.request.service_tier",
    "gen_ai.request.service_tier",
)
RESPONSE_ID_KEYS = ("gen_ai.response.id",)
OPERATION_KEY = "gen_ai.operation.name"
# Spans of these operations sum the calls beneath them: never a call of their own.
NOT_A_CALL = frozenset({"invoke_agent", "create_agent", "execute_tool", "invoke_workflow"})
STATUS_ERROR = 2


def _first(attrs: dict[str, Any], keys: Iterable[str]) -> Any:
    return next((attrs[k] for k in keys if attrs.get(k) is not None), None)


def _count(attrs: dict[str, Any], keys: Iterable[str]) -> int | None:
    value = _first(attrs, keys)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return value  # type: ignore[no-any-return]  # the record's validation names anything else


def record_fields(span: SpanData) -> dict[str, Any] | None:
    """The span's usage record fields (unvalidated), or None when it is no model call."""
    attrs = span.attributes
    if "apex.malformed" in attrs:
        raise ValueError(attrs["apex.malformed"])
    model = _first(attrs, MODEL_KEYS)
    if model is None or str(attrs.get(OPERATION_KEY, "")).lower() in NOT_A_CALL:
        return None
    if span.start_ns <= 0 or span.end_ns < span.start_ns:
        raise ValueError("the span has no valid start and end time")
    prompt, completion = _count(attrs, INPUT_KEYS), _count(attrs, OUTPUT_KEYS)
    cache_read, cache_write = _count(attrs, CACHE_READ_KEYS), _count(attrs, CACHE_WRITE_KEYS)
    reasoning = _count(attrs, REASONING_KEYS)
    if _all_ints(prompt, cache_read, cache_write) and (cache_read or 0) + (cache_write or 0) > (prompt or 0):
        prompt = (prompt or 0) + (cache_read or 0) + (cache_write or 0)  # input counted without the cache
    if _all_ints(completion, reasoning) and (reasoning or 0) > (completion or 0):
        completion = (completion or 0) + (reasoning or 0)  # output counted without reasoning
    tier = _first(attrs, SERVICE_TIER_KEYS)
    return {
        "ts": datetime.fromtimestamp(span.start_ns / 1e9, UTC).isoformat(),
        "provider": _first(attrs, PROVIDER_KEYS) or "unknown",
        "model": model,
        "workload": span.resource.get("service.name"),
        "prompt_tokens": prompt,
        "completion_tokens": 0 if completion is None else completion,
        "cached_tokens": cache_read,
        "cache_write_tokens": cache_write,
        "reasoning_tokens": reasoning,
        "service_tier": SERVICE_TIERS.get(str(tier).strip().lower()) if tier is not None else None,
        "latency_ms": round((span.end_ns - span.start_ns) / 1e6),
        "status": _status(span, attrs),
        "request_id": _first(attrs, RESPONSE_ID_KEYS) or f"otlp:{span.trace_id}:{span.span_id}",
    }


def _all_ints(*values: object) -> bool:
    return all(v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in values)


def _status(span: SpanData, attrs: dict[str, Any]) -> str:
    error = str(attrs.get("error.type") or "").lower()
    if span.status_code != STATUS_ERROR and not error:
        return "ok"
    if "timeout" in error or "deadline" in error:
        return "timeout"
    if "429" in error or "rate" in error:
        return "rate_limited"
    return "error"


def rows(spans: Iterable[SpanData]) -> Iterator[Row | None]:
    """Each span as a validated record, a rejection (named by its position in the
    export), or None (not a model call: skipped, not rejected)."""
    for span in spans:
        try:
            fields = record_fields(span)
        except (TypeError, ValueError, OverflowError, OSError) as exc:
            yield Rejected(span.number, str(exc))
            continue
        yield None if fields is None else validate_row(span.number, fields)
