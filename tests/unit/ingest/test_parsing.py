"""Reading usage uploads: each bad record named by its line and reason, the good ones
kept, any size streamed in bounded memory, and OTLP GenAI spans read as records."""

from __future__ import annotations

import tracemalloc
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from apex_contracts import InvalidInput, UsageRecord
from apex_ingest import otlp
from apex_ingest.parsing import Rejected, UploadInfo, detect_format
from apex_ingest.readers import parse_csv, parse_json, parse_ndjson


async def chunks(data: bytes, size: int = 7) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def collect(rows: AsyncIterator[UsageRecord | Rejected]) -> list[UsageRecord | Rejected]:
    return [row async for row in rows]


def record(**fields: Any) -> bytes:
    base = {
        "ts": "2026-01-05T10:00:00Z",
        "provider": "OpenAI",
        "model": "gpt-4o",
        "prompt_tokens": 10,
        "completion_tokens": 5,
    }
    return orjson.dumps({**base, **fields})


GOOD = record()


def reasons(rows: list[UsageRecord | Rejected]) -> list[tuple[int, str]]:
    return [(r.line, r.error) for r in rows if isinstance(r, Rejected)]


async def test_each_bad_record_is_named_by_line_and_reason() -> None:
    body = b"\n".join(
        [
            GOOD,
            record(prompt_tokens=-1),
            record(prompt_tokens="many"),
            record(completion_tokens=12.5),
            record(latency_ms=True),
            record(status="exploded"),
            record(ts="yesterday"),
            record(ts="3026-01-05T10:00:00Z"),
            record(ts=1_767_600),
            record(cached_tokens=11),
            b"not json",
            b"",
            record(status="OK", ts="2026-01-05"),
        ]
    )
    rows = await collect(parse_ndjson(chunks(body)))
    assert isinstance(rows[0], UsageRecord) and rows[0].provider == "openai"
    assert isinstance(rows[-1], UsageRecord) and rows[-1].status == "ok" and rows[-1].ts.hour == 0
    assert reasons(rows) == [
        (2, "prompt_tokens: Input should be greater than or equal to 0"),
        (3, "prompt_tokens: Input should be a valid integer, unable to parse string as an integer"),
        (4, "completion_tokens: Input should be a valid integer, got a number with a fractional part"),
        (5, "latency_ms: Value error, must be a number, not true/false"),
        (6, "status: Input should be 'ok', 'error', 'rate_limited' or 'timeout'"),
        (7, "ts: Input should be a valid datetime or date, input is too short"),
        (8, "ts: Value error, is in the future"),
        (9, "ts: Value error, is before 2015-01-01: check the unit (seconds or milliseconds)"),
        (10, "record: Value error, cached_tokens cannot exceed prompt_tokens"),
        (11, "not valid JSON: invalid literal, expected 'null'"),
    ]


async def test_a_line_that_is_not_utf8_is_rejected_and_the_rest_kept() -> None:
    body = GOOD + b"\n" + b'{"model": "caf\xe9"}' + b"\n\xff\xfe\n" + GOOD
    rows = await collect(parse_ndjson(chunks(body, 3)))
    assert reasons(rows) == [(2, "not UTF-8 text"), (3, "not UTF-8 text")]
    assert sum(isinstance(r, UsageRecord) for r in rows) == 2


async def test_csv_extra_columns_are_ignored_and_named_wrong_counts_rejected() -> None:
    body = (
        b"\xef\xbb\xbftimestamp,provider,model,input_tokens,output_tokens,latency_ms,team\r\n"
        b"2026-01-05T10:00:00Z,openai,gpt-4o,10,5,800,x\r\n"
        b"2026-01-05T10:00:00Z,openai,gpt-4o,10\r\n"
        b'2026-01-05 11:00:00,anthropic,"claude-sonnet-4",7,2,,"multi\nline"\r\n'
        b"2026-01-05T10:00:00Z,openai,gpt-4o,-3,5,800,x\r\n"
    )
    info = UploadInfo()
    rows = await collect(parse_csv(chunks(body), info))
    assert info.ignored_columns == ["team"]
    assert isinstance(rows[0], UsageRecord) and rows[0].latency_ms == 800 and rows[0].prompt_tokens == 10
    assert reasons(rows) == [
        (3, "expected 7 columns, found 4"),
        (6, "prompt_tokens: Input should be greater than or equal to 0"),
    ]
    assert isinstance(rows[2], UsageRecord) and rows[2].latency_ms is None and rows[2].ts.tzinfo is not None


async def test_csv_missing_required_columns_is_refused_whole_naming_them() -> None:
    with pytest.raises(InvalidInput, match="prompt_tokens, completion_tokens") as caught:
        await collect(parse_csv(chunks(b"ts,provider,model,latency_ms\n2026-01-05T10:00:00Z,a,b,1\n")))
    assert caught.value.details == {
        "missing_columns": ["prompt_tokens", "completion_tokens"],
        "required": ["ts", "provider", "model", "prompt_tokens", "completion_tokens"],
    }


@pytest.mark.parametrize("size", [1, 5, 64, 100_000])
async def test_json_documents_stream_record_by_record(size: int) -> None:
    tricky = record(workload='a}b{c"d\\e')
    document = (
        b'{"meta": {"x": [1, 2]}, "records": [\n'
        + tricky
        + b",\n 5,\n"
        + record(prompt_tokens=-1)
        + b",\n"
        + GOOD
        + b"\n]}"
    )
    rows = await collect(parse_json(chunks(document, size)))
    assert isinstance(rows[0], UsageRecord) and rows[0].workload == 'a}b{c"d\\e'
    assert reasons(rows) == [
        (3, "a record is a JSON object"),
        (4, "prompt_tokens: Input should be greater than or equal to 0"),
    ]
    assert isinstance(rows[-1], UsageRecord)
    assert len(await collect(parse_json(chunks(b"[" + GOOD + b"," + GOOD + b"]", size)))) == 2


async def test_a_json_upload_of_another_shape_is_refused() -> None:
    for document in (b'{"nope": 1}', b'"text"', b"[" + GOOD):
        with pytest.raises(InvalidInput):
            await collect(parse_json(chunks(document)))


async def test_a_50_mb_upload_streams_in_bounded_memory() -> None:
    # long records (fields near their limits), so the 50 MB are fewer, bigger records
    line = record(workload="w" * 120, prompt_hash="h" * 120, request_id="r" * 190) + b"\n"
    count = 50 * 1024 * 1024 // len(line) + 1

    async def big() -> AsyncIterator[bytes]:
        block = line * 1000
        for _ in range(count // 1000 + 1):
            yield block

    tracemalloc.start()
    seen = 0
    async for row in parse_ndjson(big()):
        assert isinstance(row, UsageRecord)
        seen += 1
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert seen * len(line) >= 50 * 1024 * 1024
    assert peak < 5 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB while reading 50 MB"


def test_format_detection() -> None:
    assert detect_format("text/csv", b"ts,") == "csv"
    assert detect_format("", b"[{") == "json"
    assert detect_format("", b"\xef\xbb\xbf[{") == "json"
    assert detect_format("", b'{"a":1}\n{"a":2}') == "ndjson"
    assert detect_format("application/x-ndjson", b"") == "ndjson"


def span(
    attrs: dict[str, Any], *, status: int = 1, start: int = 1_767_607_200_000_000_000, duration_ms: int = 850
) -> dict[str, Any]:
    def value(v: Any) -> dict[str, Any]:
        return {"intValue": str(v)} if isinstance(v, int) else {"stringValue": v}

    return {
        "traceId": "t1",
        "spanId": f"s{len(attrs)}{status}",
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(start + duration_ms * 1_000_000),
        "status": {"code": status},
        "attributes": [{"key": k, "value": value(v)} for k, v in attrs.items()],
    }


def test_otlp_genai_spans_become_usage_records() -> None:
    document = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "support-bot"}}]
                },
                "scopeSpans": [
                    {
                        "spans": [
                            span(
                                {
                                    "gen_ai.provider.name": "openai",
                                    "gen_ai.request.model": "gpt-4o",
                                    "gen_ai.response.model": "gpt-4o-2024-08-06",
                                    "gen_ai.usage.input_tokens": 1200,
                                    "gen_ai.usage.output_tokens": 80,
                                    "gen_ai.usage.cache_read.input_tokens": 1024,
                                    "gen_ai.response.id": "chatcmpl-1",
                                }
                            ),
                            span(
                                {
                                    "gen_ai.system": "anthropic",
                                    "gen_ai.request.model": "claude-sonnet-4",
                                    "gen_ai.usage.prompt_tokens": 10,
                                    "gen_ai.usage.completion_tokens": 0,
                                    "error.type": "timeout",
                                },
                                status=2,
                            ),
                            span(
                                {
                                    "gen_ai.system": "openai",
                                    "gen_ai.request.model": "gpt-4o",
                                    "gen_ai.usage.input_tokens": 5,
                                    "error.type": "429",
                                },
                                status=2,
                            ),
                            span({"http.route": "/health"}),
                            span({"gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": -4}),
                        ]
                    }
                ],
            }
        ]
    }
    rows = list(otlp.rows(otlp.decode_json(document)))
    first, timeout, limited, skipped, bad = rows
    assert isinstance(first, UsageRecord)
    assert (
        first.provider,
        first.model,
        first.workload,
        first.prompt_tokens,
        first.completion_tokens,
        first.cached_tokens,
        first.latency_ms,
        first.status,
        first.request_id,
    ) == ("openai", "gpt-4o-2024-08-06", "support-bot", 1200, 80, 1024, 850, "ok", "chatcmpl-1")
    assert first.ts.isoformat() == "2026-01-05T10:00:00+00:00"
    assert (
        isinstance(timeout, UsageRecord)
        and timeout.status == "timeout"
        and timeout.request_id == "otlp:t1:s52"
    )
    assert isinstance(limited, UsageRecord) and limited.status == "rate_limited"
    assert skipped is None, "a span that is no LLM call is skipped, not rejected"
    assert isinstance(bad, Rejected) and bad.line == 5 and bad.error.startswith("prompt_tokens")
    with pytest.raises(ValueError, match="resourceSpans"):
        otlp.decode_json({"spans": []})
