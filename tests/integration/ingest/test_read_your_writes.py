"""Read-your-writes ingest over the real stack (NATS, persistence, embedded ClickHouse):
when an upload is answered its records are committed, so the same upload right after
it answers them as duplicates, and uploads of the same records side by side store them
once and count them once (also for generated, overlapping uploads)."""

from __future__ import annotations

import asyncio
import gzip
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.ingest.conftest import Slice, Tenant

START = datetime(2026, 1, 5, tzinfo=UTC)


def rows(count: int, *, tag: str = "r", offset: int = 0) -> list[dict[str, Any]]:
    return [
        {
            "ts": (START + timedelta(minutes=n)).isoformat(),
            "provider": "openai",
            "model": "gpt-4o-mini",
            "workload": f"app-{n % 3}",
            "prompt_tokens": 1000 + n,
            "completion_tokens": 50,
            "latency_ms": 300,
            # every other record has no request id: its identity is its content
            **({"request_id": f"{tag}-{n}"} if n % 2 else {}),
        }
        for n in range(offset, offset + count)
    ]


def ndjson(records: list[dict[str, Any]]) -> bytes:
    return b"\n".join(orjson.dumps(r) for r in records)


async def upload(http: httpx.AsyncClient, tenant: Tenant, records: list[dict[str, Any]]) -> dict[str, Any]:
    response = await http.post(
        "/api/v1/usage",
        content=ndjson(records),
        headers={**tenant.headers, "Content-Type": "application/x-ndjson"},
    )
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_an_upload_repeated_at_once_is_all_duplicates(stack: Slice, http: httpx.AsyncClient) -> None:
    tenant = stack.tenant()
    records = rows(3000)
    first = await upload(http, tenant, records)
    again = await upload(http, tenant, records)  # before persistence has stored the first
    assert (first["accepted"], first["duplicates"]) == (3000, 0)
    assert (again["accepted"], again["duplicates"], again["duplicates_checked"]) == (0, 3000, True)
    summary = await stack.stored(tenant, 3000)
    assert summary["requests"] == 3000
    # once stored, the answer comes from llm_usage itself
    later = await upload(http, tenant, [*records[:10], *rows(5, tag="new", offset=5000)])
    assert (later["accepted"], later["duplicates"]) == (5, 10)
    assert (await stack.stored(tenant, 3005))["requests"] == 3005


async def test_a_gzip_upload_reads_like_a_plain_one(stack: Slice, http: httpx.AsyncClient) -> None:
    tenant = stack.tenant()
    body = gzip.compress(ndjson(rows(40, tag="gz")))
    headers = {**tenant.headers, "Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"}
    answer = (await http.post("/api/v1/usage", content=body, headers=headers)).json()
    assert (answer["accepted"], answer["rejected_total"]) == (40, 0)
    broken = await http.post("/api/v1/usage", content=body[:-20], headers=headers)
    assert broken.status_code == 422 and broken.json()["error"]["code"] == "invalid_request"


async def test_the_same_records_uploaded_side_by_side_are_stored_and_counted_once(stack: Slice) -> None:
    service = await stack.start_ingest(ingest_batch_rows=250)  # many small commits interleave
    tenant = stack.tenant()
    records = rows(2000, tag="side")
    async with httpx.AsyncClient(base_url=stack.url(service), timeout=120) as http:
        answers = await asyncio.gather(*(upload(http, tenant, records) for _ in range(4)))
    assert sum(a["accepted"] for a in answers) == 2000, answers
    assert sum(a["duplicates"] for a in answers) == 3 * 2000
    summary = await stack.stored(tenant, 2000)
    await asyncio.sleep(1.0)  # nothing more arrives
    assert (await stack.summary(tenant))["requests"] == summary["requests"] == 2000


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    uploads=st.lists(
        st.lists(st.integers(min_value=0, max_value=60), min_size=1, max_size=40), min_size=2, max_size=4
    )
)
async def test_generated_overlapping_uploads_count_each_record_once(
    stack: Slice, http: httpx.AsyncClient, uploads: list[list[int]]
) -> None:
    tenant = stack.tenant()
    catalogue = {r["prompt_tokens"]: r for r in rows(61, tag="gen")}
    answers = await asyncio.gather(
        *(upload(http, tenant, [catalogue[1000 + n] for n in picks]) for picks in uploads)
    )
    distinct = len({n for picks in uploads for n in picks})
    sent = sum(len(picks) for picks in uploads)
    assert sum(a["accepted"] for a in answers) == distinct
    assert sum(a["accepted"] + a["duplicates"] for a in answers) == sent
    assert (await stack.stored(tenant, distinct))["requests"] == distinct
