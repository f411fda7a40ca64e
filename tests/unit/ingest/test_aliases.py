"""Upload formats in the providers' own words: CSV headers and JSON keys for cache writes,
reasoning tokens and service tiers, Anthropic's export (input without the cache, cache
writes by lifetime), an exact field name beating its alias."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson

from apex_contracts import UsageRecord
from apex_ingest.parsing import UploadInfo
from apex_ingest.readers import parse_csv, parse_ndjson


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def test_anthropic_style_csv_makes_prompt_tokens_from_its_parts() -> None:
    body = (
        b"date,provider,model,usage_input_tokens_no_cache,usage_input_tokens_cache_read,"
        b"usage_input_tokens_cache_write_5m,usage_input_tokens_cache_write_1h,usage_output_tokens,service_tier\n"
        b"2026-01-05,anthropic,claude-sonnet-4,1000,4000,300,200,700,standard\n"
    )
    info = UploadInfo()
    (record,) = [r async for r in parse_csv(chunks(body), info)]
    assert isinstance(record, UsageRecord), record
    assert (
        record.prompt_tokens,
        record.cached_tokens,
        record.cache_write_tokens,
        record.completion_tokens,
        record.service_tier,
    ) == (5500, 4000, 500, 700, "default")
    assert info.ignored_columns == []


async def test_json_keys_use_the_same_aliases() -> None:
    lines = [
        {
            "timestamp": "2026-01-05T10:00:00Z",
            "provider": "openai",
            "model": "o3-mini",
            "input_tokens": 900,
            "cached_input_tokens": 100,
            "cache_creation_input_tokens": 50,
            "output_tokens": 400,
            "reasoning_output_tokens": 300,
            "tier": "flex",
        },
        {  # the exact name wins over its alias; "auto" names no tier
            "ts": "2026-01-05T10:00:00Z",
            "provider": "openai",
            "model": "gpt-4o",
            "prompt_tokens": 10,
            "input_tokens": 99,
            "completion_tokens": 1,
            "service_tier": "auto",
        },
    ]
    body = b"\n".join(orjson.dumps(line) for line in lines)
    first, second = [r async for r in parse_ndjson(chunks(body))]
    assert isinstance(first, UsageRecord) and isinstance(second, UsageRecord)
    assert (first.prompt_tokens, first.cached_tokens, first.cache_write_tokens) == (900, 100, 50)
    assert (first.reasoning_tokens, first.service_tier) == (300, "flex")
    assert (second.prompt_tokens, second.service_tier) == (10, None)


async def test_cache_write_parts_add_up_unless_a_total_is_given() -> None:
    header = b"ts,provider,model,prompt_tokens,completion_tokens,ephemeral_5m_input_tokens,ephemeral_1h_input_tokens"
    parts = [r async for r in parse_csv(chunks(header + b"\n2026-01-05,a,m,900,1,30,20\n"))]
    assert isinstance(parts[0], UsageRecord) and parts[0].cache_write_tokens == 50
    total = [
        r
        async for r in parse_csv(
            chunks(header + b",cache_creation_input_tokens\n2026-01-05,a,m,900,1,30,20,70\n")
        )
    ]
    assert isinstance(total[0], UsageRecord) and total[0].cache_write_tokens == 70
