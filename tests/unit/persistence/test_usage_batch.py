"""A batch of usage records as columns: its checks, and its ``llm_usage`` rows priced the
same as each record priced on its own."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from apex_contracts import UsageColumns, UsageIngest, UsageIngestData, UsageRecord, new_id
from apex_contracts.pricing import OVERRIDE, TABLE, PriceCatalogue, PriceOverride
from apex_contracts.usage_columns import epoch_ms, from_epoch_ms
from apex_persistence.analytics.rows import REPORTED, UNKNOWN
from apex_persistence.analytics.usage_batch import costs, usage_table

TENANT = new_id("ten")
CATALOGUE = PriceCatalogue.default().with_overrides(
    [PriceOverride(provider="acme", model="acme-ft-1", input=2.0, output=2.0, tier="small")]
)
MODELS = [
    ("openai", "gpt-4o"),
    ("openai", "gpt-4o-mini"),
    ("anthropic", "claude-sonnet-4"),
    ("deepseek", "deepseek-chat"),  # off-peak prices: priced by the moment, not the day
    ("acme", "acme-ft-1"),  # the tenant's override
    ("acme", "acme-llm-9000"),  # priced by nothing
]


@st.composite
def usage_records(draw: st.DrawFn) -> UsageRecord:
    provider, model = draw(st.sampled_from(MODELS))
    prompt = draw(st.integers(0, 300_000))
    cached = draw(st.none() | st.integers(0, prompt))
    return UsageRecord(
        ts=datetime(2025, 6, 1, tzinfo=UTC) + timedelta(minutes=draw(st.integers(0, 60 * 24 * 400))),
        provider=provider,
        model=model,
        prompt_tokens=prompt,
        completion_tokens=draw(st.integers(0, 20_000)),
        cached_tokens=cached,
        cache_write_tokens=draw(st.none() | st.integers(0, prompt - (cached or 0))),
        cost_usd=draw(st.none() | st.floats(0, 100)),
        service_tier=draw(st.sampled_from([None, "default", "batch", "flex", "priority"])),
        request_id=draw(st.none() | st.text(min_size=1, max_size=20)),
    )


@settings(max_examples=60, deadline=None)
@given(st.lists(usage_records(), max_size=40))
def test_a_batch_is_priced_as_each_record_on_its_own(records: list[UsageRecord]) -> None:
    expected = []
    for r in records:
        if r.cost_usd is not None:
            expected.append((r.cost_usd, REPORTED))
            continue
        priced = CATALOGUE.price(r.model_copy(update={"ts": from_epoch_ms(epoch_ms(r.ts))}))
        expected.append((0.0, UNKNOWN) if priced.cost_usd is None else (priced.cost_usd, priced.source))
    got = list(zip(*costs(UsageColumns.of(records), CATALOGUE), strict=True))
    assert got == expected  # the same arithmetic: equal, not close
    assert {source for _, source in got} <= {REPORTED, UNKNOWN, TABLE, OVERRIDE}


@settings(max_examples=30, deadline=None)
@given(st.lists(usage_records(), min_size=1, max_size=20))
def test_columns_survive_the_bus_and_name_each_record(records: list[UsageRecord]) -> None:
    command = UsageIngest(
        id="b:0",
        tenant_id=TENANT,
        data=UsageIngestData(batch_id="b", source="ndjson", columns=UsageColumns.of(records)),
    )
    back = UsageIngest.model_validate_json(command.model_dump_json()).data.batch()
    assert back == UsageColumns.of(records)
    assert back.dedup_key == [r.dedup_key() for r in records]
    assert [from_epoch_ms(ms) for ms in back.ts_ms] == [
        r.ts.replace(microsecond=r.ts.microsecond // 1000 * 1000) for r in records
    ]


def test_records_as_before_are_read_as_columns() -> None:
    record = UsageRecord(
        ts="2026-01-05T10:00:00Z", provider="openai", model="gpt-4o", prompt_tokens=1, completion_tokens=1
    )
    data = UsageIngestData.model_validate({"batch_id": "b", "records": [record.model_dump(mode="json")]})
    assert data.batch() == UsageColumns.of([record])
    with pytest.raises(ValidationError, match="records or as columns"):
        UsageIngestData(batch_id="b", records=[record], columns=UsageColumns.of([record]))


def test_columns_are_checked_in_bulk() -> None:
    record = UsageRecord(
        ts="2026-01-05T10:00:00Z", provider="openai", model="gpt-4o", prompt_tokens=1, completion_tokens=1
    )
    good = UsageColumns.of([record]).model_dump()
    UsageColumns.model_validate(good)
    with pytest.raises(ValidationError, match="same length"):
        UsageColumns.model_validate(good | {"model": ["a", "b"]})
    with pytest.raises(ValidationError):
        UsageColumns.model_validate(good | {"prompt_tokens": [-1]})
    with pytest.raises(ValidationError):
        UsageColumns.model_validate(good | {"status": ["maybe"]})
    with pytest.raises(ValidationError):
        UsageColumns.model_validate(good | {"ts_ms": [0]})  # 1970: before any LLM API


def test_usage_table_rows() -> None:
    records = [
        UsageRecord(
            ts="2026-01-05T10:00:00.250Z",
            provider="openai",
            model="gpt-4o",
            prompt_tokens=1000,
            completion_tokens=200,
            cached_tokens=100,
            latency_ms=800,
        ),
        UsageRecord(
            ts="2026-01-05T11:00:00Z",
            provider="x",
            model="y",
            prompt_tokens=1,
            completion_tokens=1,
            cost_usd=0.5,
        ),
    ]
    now = datetime(2026, 2, 1, 12, 0, 0, 123_456, tzinfo=UTC)
    rows = usage_table(TENANT, UsageColumns.of(records), CATALOGUE, epoch_ms(now)).to_pylist()
    assert rows[0]["ts"] == datetime(2026, 1, 5, 10, 0, 0, 250_000)  # UTC, as the column
    assert {r["ingested_at"] for r in rows} == {datetime(2026, 2, 1, 12, 0, 0, 123_000)}
    assert (rows[0]["cached_tokens"], rows[0]["latency_ms"], rows[0]["cost_source"]) == (100, 800, TABLE)
    assert (
        rows[0]["tenant_id"] == TENANT
        and rows[0]["workload"] is None
        and rows[0]["cache_write_tokens"] is None
    )
    assert (rows[1]["cost_usd"], rows[1]["cost_source"]) == (0.5, REPORTED)
    assert [r["dedup_key"] for r in rows] == [r.dedup_key() for r in records]
