"""Provider usage pages as records: OpenAI's groups become one record per request with
their tokens shared out exactly (generated groups too), Anthropic's groups one record
each with the cache folded into the input, and a group that is not valid usage is
rejected by its page and bucket, not fatal."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from apex_contracts import UsageRecord
from apex_ingest.connectors import anthropic, openai
from apex_ingest.parsing import Rejected

DAY = int(datetime(2026, 1, 5, tzinfo=UTC).timestamp())


def openai_page(results: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "object": "page",
        "data": [{"object": "bucket", "start_time": DAY, "end_time": DAY + 86_400, "results": results}],
    }


@given(
    requests=st.integers(min_value=0, max_value=300),
    prompt=st.integers(min_value=0, max_value=5_000_000),
    completion=st.integers(min_value=0, max_value=5_000_000),
    cached_share=st.floats(min_value=0, max_value=1),
)
def test_openai_groups_share_their_tokens_out_exactly(
    requests: int, prompt: int, completion: int, cached_share: float
) -> None:
    cached = int(prompt * cached_share)
    result = {
        "model": "gpt-4o",
        "project_id": "proj_a",
        "num_model_requests": requests,
        "input_tokens": prompt,
        "input_cached_tokens": cached,
        "output_tokens": completion,
    }
    rows = list(openai.records(openai_page([result])))
    assert all(isinstance(r, UsageRecord) for r in rows)
    records = [r for r in rows if isinstance(r, UsageRecord)]
    if requests == 0 and prompt + completion == 0:
        assert records == []
        return
    assert len(records) == max(requests, 1)
    assert sum(r.prompt_tokens for r in records) == prompt
    assert sum(r.completion_tokens for r in records) == completion
    assert sum(r.cached_tokens or 0 for r in records) == cached
    assert len({r.request_id for r in records}) == len(records)


def test_openai_batch_and_tiers() -> None:
    rows = list(
        openai.records(
            openai_page(
                [
                    {
                        "model": "gpt-4o",
                        "batch": True,
                        "num_model_requests": 1,
                        "input_tokens": 1,
                        "output_tokens": 1,
                    },
                    {
                        "model": "gpt-4o",
                        "service_tier": "scale",
                        "num_model_requests": 1,
                        "input_tokens": 1,
                        "output_tokens": 1,
                    },
                    {"model": "gpt-4o", "num_model_requests": -3, "input_tokens": 1, "output_tokens": 1},
                ]
            ),
            page_number=4,
        )
    )
    assert [getattr(r, "service_tier", None) for r in rows[:2]] == ["batch", "scale"]
    assert isinstance(rows[2], UsageRecord) and rows[2].prompt_tokens == 1, "a negative count is one request"
    broken = list(openai.records({"data": [{"start_time": "yesterday"}]}, page_number=2))
    assert isinstance(broken[0], Rejected) and broken[0].line == 2


def test_anthropic_groups_fold_the_cache_into_the_input() -> None:
    page = {
        "data": [
            {
                "starting_at": "2026-01-05T00:00:00Z",
                "ending_at": "2026-01-06T00:00:00Z",
                "results": [
                    {
                        "uncached_input_tokens": 100,
                        "cache_creation": {"ephemeral_5m_input_tokens": 20, "ephemeral_1h_input_tokens": 5},
                        "cache_read_input_tokens": 400,
                        "output_tokens": 30,
                        "model": "claude-opus-4",
                        "service_tier": "priority_on_demand",
                    },
                    {"uncached_input_tokens": 5, "output_tokens": -1, "model": "m"},
                    {"uncached_input_tokens": 0, "output_tokens": 0, "model": "idle"},
                ],
            }
        ]
    }
    rows = list(anthropic.records(page, page_number=3))
    record, rejected = rows
    assert isinstance(record, UsageRecord)
    assert (record.prompt_tokens, record.cached_tokens, record.cache_write_tokens, record.service_tier) == (
        525,
        400,
        25,
        "priority",
    )
    assert isinstance(rejected, Rejected) and rejected.line == 3 and "completion_tokens" in rejected.error
