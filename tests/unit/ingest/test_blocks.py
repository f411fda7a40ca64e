"""Records validated a block at a time say exactly what validating them one by one says
(the same records, the same rejections with the same reasons, in the same order), and
the block readers number lines the same whatever the chunks and block boundaries."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from apex_ingest import readers
from apex_ingest.parsing import Rejected, candidate, validate_candidates, validate_row

tokens = st.one_of(
    st.integers(-5, 12_000_000), st.booleans(), st.none(), st.just(""), st.text(max_size=4), st.floats()
)
times = st.one_of(
    st.sampled_from(
        [
            "2026-01-05T10:00:00Z",
            "2026-01-05 10:00",
            "2026-01-05",
            "2014-12-31T00:00:00Z",
            "3026-01-01T00:00:00Z",
        ]
    ),
    st.text(max_size=6),
    st.integers(),
)
records = st.fixed_dictionaries(
    {
        "ts": times,
        "provider": st.sampled_from(["OpenAI", "", "x" * 70]),
        "model": st.sampled_from(["gpt-4o", ""]),
    },
    optional={
        "prompt_tokens": tokens,
        "completion_tokens": tokens,
        "cached_tokens": tokens,
        "cache_write_tokens": tokens,
        "reasoning_tokens": tokens,
        "status": st.sampled_from(["ok", "ERROR", "nope", None]),
        "service_tier": st.sampled_from(["default", "Batch", "auto", "odd"]),
        "input_tokens": tokens,
        "request_id": st.text(max_size=3),
        "tenant_id": st.just("ten_x"),
    },
)
raws = st.one_of(records, records, records, st.integers(), st.lists(st.integers(), max_size=2))


@settings(max_examples=300, deadline=None)
@given(st.lists(raws, max_size=40))
def test_a_block_validates_as_its_rows_do_one_by_one(batch: list[Any]) -> None:
    one_by_one = [validate_row(line, raw) for line, raw in enumerate(batch, 1)]
    assert validate_candidates([candidate(line, raw) for line, raw in enumerate(batch, 1)]) == one_by_one


def _line(n: int) -> bytes:
    if n % 97 == 0:
        return b"{not json"
    if n % 89 == 0:
        return b""
    good = {"ts": "2026-01-05T10:00:00Z", "provider": "openai", "model": "gpt-4o", "request_id": f"r{n}"}
    return orjson.dumps({**good, "prompt_tokens": -1 if n % 83 == 0 else n, "completion_tokens": 1})


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for at in range(0, len(data), size):
        yield data[at : at + size]


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 5000))
def test_line_numbers_survive_chunks_and_blocks(chunk: int) -> None:
    count = readers.BLOCK_ROWS * 2 + 37
    body = b"\n".join(_line(n) for n in range(1, count + 1))

    async def read() -> list[Any]:
        return [row async for row in readers.parse_ndjson(_chunks(body, chunk))]

    rows = asyncio.run(read())
    rejected = [r.line for r in rows if isinstance(r, Rejected)]
    assert rejected == [n for n in range(1, count + 1) if n % 97 == 0 or (n % 83 == 0 and n % 89)]
    assert [r.request_id for r in rows if not isinstance(r, Rejected)] == [
        f"r{n}" for n in range(1, count + 1) if n % 97 and n % 83 and n % 89
    ]
