from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from apex_contracts import InvalidInput, UsageRecord
from apex_gateway.ingest import Rejected, detect_format, parse_csv, parse_json, parse_ndjson


async def chunks(data: bytes, size: int = 7) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def collect(rows: AsyncIterator[UsageRecord | Rejected]) -> list[UsageRecord | Rejected]:
    return [row async for row in rows]


GOOD = b'{"ts":"2026-01-05T10:00:00Z","provider":"OpenAI","model":"gpt-4o","prompt_tokens":10,"completion_tokens":5}'


async def test_ndjson_keeps_good_rows_and_names_bad_ones() -> None:
    body = b"\n".join([
        GOOD,
        b'{"ts":"2026-01-05T10:00:00Z","provider":"openai","model":"gpt-4o","prompt_tokens":-1,"completion_tokens":5}',
        b"not json",
        b"",
        b'{"ts":"yesterday","provider":"openai","model":"gpt-4o","prompt_tokens":1,"completion_tokens":5}',
        b'{"ts":"2026-01-05T10:00:00Z","provider":"openai","model":"gpt-4o","prompt_tokens":1,"completion_tokens":5,"status":"weird"}',
    ])
    rows = await collect(parse_ndjson(chunks(body)))
    assert isinstance(rows[0], UsageRecord) and rows[0].provider == "openai"
    bad = [(r.line, r.error.split(":")[0]) for r in rows if isinstance(r, Rejected)]
    assert bad == [(2, "prompt_tokens"), (3, "not valid JSON"), (5, "ts"), (6, "status")]


async def test_csv_with_extra_columns_and_wrong_column_counts() -> None:
    body = (
        b"ts,provider,model,prompt_tokens,completion_tokens,latency_ms,extra\n"
        b"2026-01-05T10:00:00Z,openai,gpt-4o,10,5,800,x\n"
        b"2026-01-05T10:00:00Z,openai,gpt-4o,10\n"
        b"2026-01-05 11:00:00,anthropic,claude-sonnet-4,7,2,,y\n"
    )
    rows = await collect(parse_csv(chunks(body)))
    assert isinstance(rows[0], UsageRecord) and rows[0].latency_ms == 800
    assert isinstance(rows[1], Rejected) and rows[1].line == 3
    assert isinstance(rows[2], UsageRecord) and rows[2].latency_ms is None and rows[2].ts.tzinfo is not None


async def test_csv_missing_required_columns_is_refused_whole() -> None:
    with pytest.raises(InvalidInput, match="prompt_tokens"):
        await collect(parse_csv(chunks(b"ts,provider,model\n")))


async def test_non_utf8_is_refused_with_its_line() -> None:
    with pytest.raises(InvalidInput, match="UTF-8"):
        await collect(parse_ndjson(chunks(GOOD + b"\n\xff\xfe\n")))


async def test_json_array_and_records_object() -> None:
    assert len(await collect(parse_json(chunks(b"[" + GOOD + b"," + GOOD + b"]"), 10_000))) == 2
    assert len(await collect(parse_json(chunks(b'{"records":[' + GOOD + b"]}"), 10_000))) == 1
    with pytest.raises(InvalidInput):
        await collect(parse_json(chunks(b'{"nope": 1}'), 10_000))


def test_format_detection() -> None:
    assert detect_format("text/csv", b"ts,") == "csv"
    assert detect_format("", b"[{") == "json"
    assert detect_format("", b'{"a":1}\n{"a":2}') == "ndjson"
    assert detect_format("application/x-ndjson", b"") == "ndjson"
