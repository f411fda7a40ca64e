"""The whole service in-process over a real NATS (its own server: stream and durable
names are fixed), Postgres, Redis and the embedded ClickHouse: events published with
Bus.publish_event reach every view, the read API answers per tenant, usage ingest lands
in llm_usage, and events stored twice in the stream change nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import nats.js.errors
import orjson
import pytest
from sqlalchemy import text

from apex_contracts import InvalidInput, NotFound, UsageIngest, UsageIngestData, new_id, subjects
from apex_contracts.queries import (
    Q_EVENTS_ARCHIVE,
    Q_RUNS_GET,
    Q_THREADS_GET,
    Q_THREADS_LIST,
    Q_USAGE_AGGREGATE,
    EventsArchive,
    EventsPage,
    QueryReply,
    RunGet,
    ThreadDetail,
    ThreadGet,
    ThreadsList,
    ThreadsPage,
    UsageAggregate,
    UsageRows,
)
from apex_persistence.analytics.port import ChdbStore
from apex_persistence.bootstrap import PersistenceService
from apex_persistence.hot import HotViews
from apex_persistence.settings import PersistenceSettings
from apex_persistence.status import projections_status
from apex_persistence.views import RunView
from apex_runtime import Bus


async def caught_up(service: PersistenceService) -> bool:
    lags = await _lags(service)
    return len(lags) == len(service.runners) and all(lag == 0 for lag in lags.values())


async def _lags(service: PersistenceService) -> dict[str, int]:
    from apex_persistence.projection.runner import LagMonitor

    return await LagMonitor(service.host.bus, service.runners, {}).measure()


@pytest.fixture
async def service(
    server_factory: Any, pg_dsn: str, redis_url: str, analytics: ChdbStore
) -> AsyncIterator[PersistenceService]:
    nats = server_factory("nats")
    settings = PersistenceSettings(
        nats_url=nats.url,
        postgres_dsn=pg_dsn,
        redis_url=redis_url,
        persistence_port=0,
        instance_id="persistence-test",
        clickhouse_database=analytics.database,
        log_format="text",
    )
    running = PersistenceService(settings, analytics=analytics)
    await running.start()
    yield running
    await running.stop()


async def test_events_reach_every_view_and_the_read_api(
    service: PersistenceService, story: Any, new_story: Any, eventually: Any, capsys: Any
) -> None:
    bus = service.host.bus
    other = new_story()
    events = story.threads(count=2, runs_per_thread=2) + other.run()
    for event in events:
        await bus.publish_event(event)
    await eventually(lambda: caught_up(service))

    me = {"tenant_id": story.tenant_id, "user_id": story.user_id}
    page = await bus.query(Q_THREADS_LIST, ThreadsList(**me), ThreadsPage)
    assert len(page.threads) == 2
    thread_id = events[0].thread_id
    detail = await bus.query(Q_THREADS_GET, ThreadGet(**me, thread_id=thread_id), ThreadDetail)
    assert [m.role for m in detail.messages] == ["user", "assistant", "user", "assistant"]
    run = await bus.query(Q_RUNS_GET, RunGet(**me, run_id=str(events[0].run_id)), RunView)
    assert (run.status, run.tool_calls) == ("completed", 1)
    archive = await bus.query(
        Q_EVENTS_ARCHIVE, EventsArchive(**me, thread_id=thread_id, after_seq=3), EventsPage
    )
    assert archive.first_seq == 4 and [e.event["thread_id"] for e in archive.events] == [thread_id] * len(
        archive.events
    )

    intruder = {"tenant_id": other.tenant_id, "user_id": other.user_id}
    with pytest.raises(NotFound):
        await bus.query(Q_THREADS_GET, ThreadGet(**intruder, thread_id=thread_id), ThreadDetail)
    with pytest.raises(NotFound):
        await bus.query(Q_RUNS_GET, RunGet(**intruder, run_id=str(events[0].run_id)), RunView)
    for body in ({"user_id": story.user_id}, {**me, "tenant_id": "ten_nope"}, {**me, "tenant_id": None}):
        reply = await _raw_query(bus, Q_THREADS_LIST, body)
        assert reply.error is not None and (reply.ok, reply.error.code) == (False, "invalid_request")
    with pytest.raises(InvalidInput):
        await bus.query(Q_THREADS_LIST, ThreadsList(**me, cursor="garbage!"), ThreadsPage)

    status = await HotViews(service.stores.redis).run_status(story.tenant_id, str(events[0].run_id))
    assert status is not None and status["status"] == "completed"

    async def lag_reported() -> bool:
        details = service.host.health.details
        return all(details.get(f"lag_{store}") == 0 for store in ("postgres", "redis", "clickhouse", "audit"))

    await eventually(lag_reported, timeout=5.0)

    async def status_shows_checkpoint() -> bool:
        assert await projections_status(service.settings, "postgres") == 0
        shown = capsys.readouterr().out.splitlines()[-1].split()
        position = str(service.runners[0].position)
        return shown == ["postgres", "active", position, position, "0", "closed", "-"]

    await eventually(status_shows_checkpoint, timeout=10.0)


async def _raw_query(bus: Bus, name: str, body: dict[str, Any]) -> QueryReply:
    msg = await bus.nc.request(subjects.query(name), orjson.dumps(body), timeout=5.0)
    return QueryReply.model_validate_json(msg.data)


async def test_events_stored_twice_in_the_stream_change_nothing(
    service: PersistenceService, story: Any, eventually: Any
) -> None:
    bus = service.host.bus
    events = story.threads(count=2, runs_per_thread=2)
    for event in events:
        await bus.publish_event(event)
    await eventually(lambda: caught_up(service))
    before = await _views(service, story.tenant_id)

    # Beyond the duplicate window a retried publish is stored again, at a new seq.
    for event in reversed(events):
        await bus.js.publish(
            subjects.thread_events(event.tenant_id, event.user_id, event.thread_id), event.wire()
        )
    await eventually(lambda: caught_up(service))
    assert await _views(service, story.tenant_id) == before


async def _views(service: PersistenceService, tenant_id: str) -> dict[str, Any]:
    views: dict[str, Any] = {}
    async with service.stores.db.writer() as conn:
        for table in ("threads", "messages", "runs", "events"):
            rows = await conn.execute(text(f"SELECT * FROM apex.{table} ORDER BY id"))
            views[table] = [dict(r) for r in rows.mappings()]
    counts = await service.stores.analytics.select(
        "SELECT count() AS n, uniqExact(id) AS ids FROM $db.events FINAL WHERE tenant_id = {t:String}",
        {"t": tenant_id},
    )
    views["clickhouse"] = counts
    hot = HotViews(service.stores.redis)
    views["redis"] = {
        run["id"]: ((await hot.run_status(tenant_id, run["id"])) or {}).get("status") for run in views["runs"]
    }
    views["recent"] = {
        thread["id"]: await hot.recent_events(tenant_id, thread["id"]) for thread in views["threads"]
    }
    return views


async def test_usage_ingest_command_lands_once(service: PersistenceService, eventually: Any) -> None:
    bus = service.host.bus
    tenant = new_id("ten")
    records = [
        {
            "ts": f"2026-01-0{1 + n % 5}T10:00:00Z",
            "provider": "openai",
            "model": "gpt-4o-mini",
            "prompt_tokens": 1000 + n,
            "completion_tokens": 100,
            "latency_ms": 200 + 10 * n,
            **({"request_id": f"r{n}"} if n % 2 else {}),
        }
        for n in range(40)
    ]
    for batch_id in ("b1", "b2"):  # the same upload twice
        command = UsageIngest(
            id=new_id("cmd"),
            tenant_id=tenant,
            data=UsageIngestData.model_validate({"batch_id": batch_id, "records": records}),
        )
        await bus.publish(command, subjects.usage_ingest(tenant))

    async def totals() -> dict[str, Any] | None:
        rows = await bus.query(
            Q_USAGE_AGGREGATE,
            UsageAggregate(tenant_id=tenant, metrics=["requests", "prompt_tokens", "latency_p50"]),
            UsageRows,
        )
        return rows.rows[0] if rows.rows and rows.rows[0]["requests"] == 40 else None

    row = await eventually(totals)
    await asyncio.sleep(0.5)
    row = await totals()
    assert row == {"requests": 40, "prompt_tokens": sum(1000 + n for n in range(40)), "latency_p50": 395.0}
    consumer = await bus.js.consumer_info("APEX_CMD", "persistence-usage-batches")
    assert consumer.num_ack_pending == 0 and consumer.num_pending == 0


async def test_a_usage_batch_on_another_tenants_subject_is_dead_lettered(
    service: PersistenceService, eventually: Any
) -> None:
    bus = service.host.bus
    owner, other = new_id("ten"), new_id("ten")
    command = UsageIngest(
        id=new_id("cmd"),
        tenant_id=owner,
        data=UsageIngestData.model_validate(
            {
                "batch_id": "b-misfiled",
                "records": [
                    {
                        "ts": "2026-01-05T10:00:00Z",
                        "provider": "openai",
                        "model": "gpt-4o",
                        "prompt_tokens": 1,
                        "completion_tokens": 1,
                    }
                ],
            }
        ),
    )
    await bus.publish(command, subjects.usage_ingest(other))

    async def dead_lettered() -> Any:
        try:
            return await bus.js.get_last_msg("APEX_DLQ", f"apex.dlq.usage.ingest.{other}")
        except nats.js.errors.NotFoundError:
            return None

    letter = await eventually(dead_lettered)
    assert letter.headers["Apex-Error-Code"] == "invalid_request"
    rows = await bus.query(
        Q_USAGE_AGGREGATE, UsageAggregate(tenant_id=other, metrics=["requests"]), UsageRows
    )
    assert rows.rows in ([], [{"requests": 0}])
