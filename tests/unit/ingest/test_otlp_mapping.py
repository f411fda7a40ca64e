"""GenAI spans read as usage records: current and older attribute names, the token
conventions of instrumentations that count the other way, service tiers, spans that sum
other calls, and any attribute values at all (generated) never break an export."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apex_contracts import UsageRecord
from apex_ingest import otlp
from apex_ingest.otlp import SpanData
from apex_ingest.parsing import Rejected

START = 1_767_607_200_000_000_000


def span(attrs: dict[str, Any], *, status: int = 1, number: int = 1) -> SpanData:
    return SpanData(number, attrs, {"service.name": "bot"}, START, START + 1_500_000_000, status, "ab", "cd")


def one(attrs: dict[str, Any], **kw: Any) -> UsageRecord | Rejected | None:
    return next(otlp.rows([span(attrs, **kw)]))


def test_current_names() -> None:
    record = one(
        {
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": 5000,
            "gen_ai.usage.output_tokens": 900,
            "gen_ai.usage.cache_read.input_tokens": 3000,
            "gen_ai.usage.cache_creation.input_tokens": 1000,
            "gen_ai.usage.reasoning.output_tokens": 600,
            "openai.response.service_tier": "priority",
            "openai.request.service_tier": "auto",
        }
    )
    assert isinstance(record, UsageRecord)
    assert (
        record.prompt_tokens,
        record.cached_tokens,
        record.cache_write_tokens,
        record.completion_tokens,
        record.reasoning_tokens,
        record.service_tier,
        record.latency_ms,
        record.workload,
        record.request_id,
    ) == (5000, 3000, 1000, 900, 600, "priority", 1500, "bot", "otlp:ab:cd")


def test_older_names_and_the_other_conventions() -> None:
    record = one(
        {
            "gen_ai.system": "anthropic",
            "gen_ai.response.model": "claude-sonnet-4",
            "gen_ai.usage.prompt_tokens": 200,  # without the cache: the cache counts exceed it
            "gen_ai.usage.completion_tokens": 50,  # without reasoning: reasoning exceeds it
            "gen_ai.usage.cache_read_input_tokens": 700,
            "gen_ai.usage.cache_creation_input_tokens": 100,
            "gen_ai.usage.reasoning_tokens": 80,
            "gen_ai.openai.request.service_tier": "standard",
        }
    )
    assert isinstance(record, UsageRecord)
    assert (record.provider, record.prompt_tokens, record.completion_tokens, record.service_tier) == (
        "anthropic",
        1000,
        130,
        "default",
    )
    legacy = one(
        {"gen_ai.request.model": "m", "llm.usage.prompt_tokens": 3, "llm.usage.completion_tokens": "4"}
    )
    assert isinstance(legacy, UsageRecord) and (legacy.prompt_tokens, legacy.completion_tokens) == (3, 4)
    assert isinstance(legacy, UsageRecord) and legacy.provider == "unknown"


def test_spans_that_are_no_single_call_are_skipped() -> None:
    assert one({"http.route": "/"}) is None
    for operation in ("invoke_agent", "execute_tool", "create_agent", "invoke_workflow"):
        assert one({"gen_ai.operation.name": operation, "gen_ai.request.model": "gpt-4o"}) is None
    assert isinstance(
        one(
            {
                "gen_ai.operation.name": "embeddings",
                "gen_ai.request.model": "e",
                "gen_ai.usage.input_tokens": 9,
            }
        ),
        UsageRecord,
    )


def test_statuses_and_bad_spans() -> None:
    base = {"gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 1}
    assert one({**base, "error.type": "TimeoutError"}, status=2).status == "timeout"  # type: ignore[union-attr]
    assert one({**base, "error.type": "RateLimitError"}).status == "rate_limited"  # type: ignore[union-attr]
    assert one(base, status=2).status == "error"  # type: ignore[union-attr]
    missing = one({"gen_ai.request.model": "gpt-4o"})
    assert isinstance(missing, Rejected) and missing.error.startswith("prompt_tokens")
    broken = next(
        otlp.rows(
            [SpanData(4, {"gen_ai.request.model": "x", "gen_ai.usage.input_tokens": 1}, {}, 0, 0, 0, "", "")]
        )
    )
    assert isinstance(broken, Rejected) and broken.line == 4 and "start and end" in broken.error


def test_json_exports_with_odd_shapes_reject_only_the_odd_span() -> None:
    document = {
        "resourceSpans": [
            {
                "scopeSpans": [
                    {"spans": ["not a span", {"startTimeUnixNano": "soon", "attributes": []}, None]}
                ]
            },
            {
                "resource": {
                    "attributes": [{"key": 1}, {"key": "service.name", "value": {"stringValue": "x"}}]
                }
            },
        ]
    }
    rows = list(otlp.rows(otlp.decode_json(document)))
    assert [type(r).__name__ for r in rows] == ["Rejected", "Rejected", "Rejected"]


VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.lists(st.integers(), max_size=3),
)
KEYS = st.sampled_from(
    [
        "gen_ai.request.model",
        "gen_ai.response.model",
        "gen_ai.provider.name",
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.output_tokens",
        "gen_ai.usage.cache_read.input_tokens",
        "gen_ai.usage.cache_creation.input_tokens",
        "gen_ai.usage.reasoning.output_tokens",
        "openai.response.service_tier",
        "gen_ai.response.id",
        "gen_ai.operation.name",
        "error.type",
    ]
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    attrs=st.dictionaries(KEYS, VALUES, max_size=12),
    start=st.integers(min_value=-1, max_value=2**64 - 1),
    length=st.integers(min_value=-(10**12), max_value=10**15),
)
def test_any_attribute_values_give_a_record_a_rejection_or_a_skip(
    attrs: dict[str, Any], start: int, length: int
) -> None:
    data = SpanData(1, attrs, {}, start, start + length, 2, "t", "s")
    (row,) = list(otlp.rows([data]))
    assert row is None or isinstance(row, UsageRecord | Rejected)
