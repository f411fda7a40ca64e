"""UsageAggregate compiled to SQL; dedup keys; ClickHouse time text."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from apex_contracts import InvalidInput, UsageRecord, new_id
from apex_contracts.queries import UsageAggregate, UsageFilter
from apex_persistence.analytics.aggregate import METRICS, compile_aggregate, normalise
from apex_persistence.analytics.rows import ch_time, from_ch_time

TENANT = new_id("ten")


def record(**fields: object) -> UsageRecord:
    base: dict[str, object] = {
        "ts": "2026-01-05T10:00:00Z",
        "provider": "openai",
        "model": "gpt-4o",
        "prompt_tokens": 1000,
        "completion_tokens": 200,
    }
    return UsageRecord.model_validate(base | fields)


def test_tenant_and_every_filter_are_bound_parameters() -> None:
    compiled = compile_aggregate(
        UsageAggregate(
            tenant_id=TENANT,
            group_by=["model", "day"],
            metrics=["requests", "cost_usd", "latency_p95"],
            filter=UsageFilter(start=datetime(2026, 1, 1, tzinfo=UTC), models=["gpt-4o'; DROP TABLE x"]),
            min_requests=2,
            order_by="cost_usd",
            limit=10,
        )
    )
    assert compiled.sql == (
        "SELECT u.model AS model, toDate(u.ts) AS day, count() AS requests, sum(u.cost_usd) AS cost_usd, "
        "quantileExactInclusive(0.95)(u.latency_ms) AS latency_p95\n"
        "FROM $db.llm_usage AS u FINAL\n"
        "WHERE u.tenant_id = {tenant_id:String} AND u.ts >= {start:DateTime64(3, 'UTC')} "
        "AND u.model IN {models:Array(String)}\n"
        "GROUP BY model, day\n"
        "HAVING count() >= {min_requests:UInt64}\n"
        "ORDER BY cost_usd DESC, model, day\n"
        "LIMIT {limit:UInt32}"
    )
    assert TENANT not in compiled.sql and "DROP" not in compiled.sql
    assert compiled.params == {
        "tenant_id": TENANT,
        "start": "2026-01-01 00:00:00.000",
        "models": ["gpt-4o'; DROP TABLE x"],
        "min_requests": 2,
        "limit": 10,
    }


def test_without_grouping_there_is_one_row_and_no_group_by() -> None:
    compiled = compile_aggregate(UsageAggregate(tenant_id=TENANT, metrics=["requests", "first_ts"]))
    assert "GROUP BY" not in compiled.sql and "ORDER BY" not in compiled.sql
    assert compiled.kinds == {"requests": "int", "first_ts": "time"}


def test_only_whitelisted_names_and_a_tenant_are_accepted() -> None:
    with pytest.raises(ValidationError):
        UsageAggregate.model_validate({"tenant_id": TENANT, "metrics": ["sum(cost_usd)"]})
    with pytest.raises(ValidationError):
        UsageAggregate.model_validate({"tenant_id": TENANT, "metrics": ["requests"], "group_by": ["1; --"]})
    with pytest.raises(ValidationError):
        UsageAggregate.model_validate({"tenant_id": "ten_nope", "metrics": ["requests"]})
    with pytest.raises(InvalidInput):
        compile_aggregate(UsageAggregate(tenant_id=TENANT, metrics=["requests"], order_by="cost_usd"))
    assert set(METRICS) == set(UsageAggregate.model_fields["metrics"].annotation.__args__[0].__args__)


def test_rows_have_the_same_types_whatever_the_engine() -> None:
    kinds = {"day": "date", "first_ts": "time", "requests": "int", "latency_p50": "float", "model": "str"}
    chdb_row = {
        "day": "2026-01-05",
        "first_ts": "2026-01-05 10:00:00.250",
        "requests": "7",
        "latency_p50": None,
        "model": "gpt-4o",
    }
    server_row = {
        "day": datetime(2026, 1, 5).date(),
        "first_ts": datetime(2026, 1, 5, 10, 0, 0, 250_000, tzinfo=UTC),
        "requests": 7,
        "latency_p50": float("nan"),
        "model": "gpt-4o",
    }
    expected = {
        "day": "2026-01-05",
        "first_ts": "2026-01-05T10:00:00.250000+00:00",
        "requests": 7,
        "latency_p50": None,
        "model": "gpt-4o",
    }
    assert normalise(chdb_row, kinds) == normalise(server_row, kinds) == expected


def test_dedup_key_is_the_request_id_or_a_hash_of_the_record() -> None:
    assert record(request_id="req-1").dedup_key() == "req-1"
    hashed = record().dedup_key()
    assert hashed.startswith("h_") and hashed == record().dedup_key()
    assert hashed != record(prompt_tokens=1001).dedup_key()
    assert hashed != record(ts="2026-01-05T10:00:00.001Z").dedup_key()


@given(st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9000, 1, 1), timezones=st.timezones()))
def test_ch_time_is_clickhouse_datetime64_text_in_utc(moment: datetime) -> None:
    utc = moment.astimezone(UTC)
    assert ch_time(moment) == utc.strftime("%Y-%m-%d %H:%M:%S.") + f"{utc.microsecond // 1000:03d}"
    assert from_ch_time(ch_time(moment)) == utc.replace(microsecond=utc.microsecond // 1000 * 1000)


def test_grouping_sets_are_one_query_each_row_naming_its_set() -> None:
    compiled = compile_aggregate(
        UsageAggregate(
            tenant_id=TENANT,
            metrics=["requests"],
            grouping_sets=[[], ["provider", "model"], ["workload"]],
            order_by="requests",
            limit=100,
        )
    )
    assert compiled.sql == (
        "SELECT u.provider AS provider, u.model AS model, u.workload AS workload, count() AS requests, "
        "multiIf(GROUPING(provider, model, workload) = 7, 0, GROUPING(provider, model, workload) = 1, 1, 2)"
        " AS grouping_set\n"
        "FROM $db.llm_usage AS u FINAL\n"
        "WHERE u.tenant_id = {tenant_id:String}\n"
        "GROUP BY GROUPING SETS ((), (provider, model), (workload))\n"
        "ORDER BY grouping_set, requests DESC, provider, model, workload\n"
        "LIMIT {limit:UInt32} BY grouping_set\n"
        "SETTINGS group_by_use_nulls = 1, force_grouping_standard_compatibility = 1"
    )
    assert compiled.kinds["grouping_set"] == "int"


@pytest.mark.parametrize(
    "shape",
    [
        {"group_by": ["model"], "grouping_sets": [["model"]]},
        {"grouping_sets": [["model", "day"], ["day", "model"]]},
        {"grouping_sets": [["model"]] * 9},
    ],
)
def test_grouping_sets_refused(shape: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        UsageAggregate.model_validate({"tenant_id": TENANT, "metrics": ["requests"], **shape})
