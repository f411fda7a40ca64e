"""The Postgres projection: erasure, titles, the reads, and row-level security as a
second wall (exactness under redelivery is ``test_projection_contract.py``)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from apex_contracts import (
    NotFound,
    ThreadDeleted,
    ThreadDeletedData,
    ThreadRenamed,
    ThreadRenamedData,
    derive_id,
    new_id,
)
from apex_contracts.audit import AuditEntry, audit_subject
from apex_contracts.queries import AuditList, EventsArchive, RunGet, ThreadGet, ThreadsList
from apex_persistence.postgres.db import Database
from apex_persistence.postgres.projector import AuditProjection, PostgresProjection
from apex_persistence.postgres.reads import HistoryReads
from apex_persistence.projection.delivery import Delivery
from tests.integration.persistence.harness import VIEW_TABLES, dump_postgres


async def test_run_view_follows_the_run(pg: Database, story: Any) -> None:
    events = story.run(end="failed", tools=3, tokens=250)
    await PostgresProjection(pg).apply(list(reversed(story.deliveries(events))))
    run = await HistoryReads(pg).run_get(
        RunGet(tenant_id=story.tenant_id, user_id=story.user_id, run_id=str(events[0].run_id))
    )
    assert (run.status, run.tool_calls, run.llm_tokens, run.error_code) == ("failed", 3, 250, "tool_failed")
    assert run.started_at == events[1].occurred_at and run.ended_at == events[-1].occurred_at
    assert run.duration_ms == 2000


async def test_titles_threads_and_messages(pg: Database, story: Any) -> None:
    thread_id = new_id("thr")
    first = story.run(thread_id, text="What did we spend on embeddings last week and why so much")
    second = story.run(thread_id, text="And latency?")
    batch = story.deliveries(first + second)
    projection = PostgresProjection(pg)
    await projection.apply(batch[len(first) :])
    await projection.apply(batch[: len(first)])
    reads = HistoryReads(pg)
    q = ThreadGet(tenant_id=story.tenant_id, user_id=story.user_id, thread_id=thread_id)
    detail = await reads.thread_get(q)
    assert detail.title == "What did we spend on embeddings last week…"
    assert [(m.role, m.content) for m in detail.messages] == [
        ("user", first[0].data.content),
        ("assistant", "Report (completed)."),
        ("user", "And latency?"),
        ("assistant", "Report (completed)."),
    ]
    assert detail.messages[1].id == derive_id("msg", str(first[0].run_id), "assistant")

    scope = story.run(thread_id)[0]
    rename = scope.model_copy(update={"id": new_id("evt")})
    renamed = ThreadRenamed(
        **{**rename.model_dump(exclude={"type", "data"}), "data": ThreadRenamedData(title="Spend")}
    )
    await projection.apply(story.deliveries([renamed], first_seq=500))
    await projection.apply(batch[:1])
    assert (await reads.thread_get(q)).title == "Spend"


async def test_threads_list_pages_and_searches(pg: Database, story: Any) -> None:
    events = []
    for n in range(5):
        events += story.run(text=f"{'Cost' if n % 2 else 'Latency'} question number {n}")
    await PostgresProjection(pg).apply(story.deliveries(events))
    reads = HistoryReads(pg)
    seen: list[str] = []
    cursor = None
    while True:
        page = await reads.threads_list(
            ThreadsList(tenant_id=story.tenant_id, user_id=story.user_id, limit=2, cursor=cursor)
        )
        seen += [t.title for t in page.threads]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [f"{'Cost' if n % 2 else 'Latency'} question number {n}" for n in reversed(range(5))]
    found = await reads.threads_list(
        ThreadsList(tenant_id=story.tenant_id, user_id=story.user_id, search="cost")
    )
    assert [t.title for t in found.threads] == ["Cost question number 3", "Cost question number 1"]
    nothing = await reads.threads_list(
        ThreadsList(tenant_id=story.tenant_id, user_id=story.user_id, search="%")
    )
    assert nothing.threads == []


async def test_other_tenants_and_users_see_not_found(pg: Database, story: Any) -> None:
    events = story.run()
    await PostgresProjection(pg).apply(story.deliveries(events))
    reads = HistoryReads(pg)
    thread_id, run_id = events[0].thread_id, str(events[0].run_id)
    for tenant, user in ((new_id("ten"), story.user_id), (story.tenant_id, new_id("usr"))):
        with pytest.raises(NotFound):
            await reads.thread_get(ThreadGet(tenant_id=tenant, user_id=user, thread_id=thread_id))
        with pytest.raises(NotFound):
            await reads.run_get(RunGet(tenant_id=tenant, user_id=user, run_id=run_id))
        with pytest.raises(NotFound):
            await reads.events_archive(EventsArchive(tenant_id=tenant, user_id=user, thread_id=thread_id))
        assert (await reads.threads_list(ThreadsList(tenant_id=tenant, user_id=user))).threads == []


async def test_row_level_security_holds_for_a_query_without_tenant_filter(
    pg: Database, new_story: Any
) -> None:
    mine, theirs = new_story(), new_story()
    await PostgresProjection(pg).apply(mine.deliveries(mine.run() + theirs.run() + theirs.run()))
    for table in VIEW_TABLES:
        async with pg.reader(mine.tenant_id) as conn:
            tenants = set((await conn.execute(text(f"SELECT tenant_id FROM apex.{table}"))).scalars())
        assert tenants == {mine.tenant_id}, table
    async with pg.writer() as conn:
        everyone = set((await conn.execute(text("SELECT tenant_id FROM apex.runs"))).scalars())
    assert everyone == {mine.tenant_id, theirs.tenant_id}


async def test_archive_pages_after_a_seq(pg: Database, story: Any) -> None:
    events = story.run(tools=3)
    await PostgresProjection(pg).apply(story.deliveries(events, first_seq=100))
    reads = HistoryReads(pg)
    q = EventsArchive(
        tenant_id=story.tenant_id,
        user_id=story.user_id,
        thread_id=events[0].thread_id,
        after_seq=102,
        limit=4,
    )
    page = await reads.events_archive(q)
    assert [e.seq for e in page.events] == [103, 104, 105, 106]
    assert (page.first_seq, page.last_seq) == (103, 106)
    assert [e.event["id"] for e in page.events] == [e.id for e in events[3:7]]


async def test_delete_hides_and_erase_removes_everywhere(pg: Database, story: Any) -> None:
    kept, erased = story.run(), story.run()
    projection = PostgresProjection(pg)
    await projection.apply(story.deliveries(kept + erased))
    reads = HistoryReads(pg)
    soft = _tombstone(kept[0], erase=False)
    hard = _tombstone(erased[0], erase=True)
    await projection.apply(story.deliveries([soft, hard], first_seq=1000))
    for thread_id in (kept[0].thread_id, erased[0].thread_id):
        with pytest.raises(NotFound):
            await reads.thread_get(
                ThreadGet(tenant_id=story.tenant_id, user_id=story.user_id, thread_id=thread_id)
            )
    await projection.apply(story.deliveries(erased))
    rows = await dump_postgres(pg)
    for table in ("messages", "runs", "events"):
        assert not [r for r in rows[table] if r["thread_id"] == erased[0].thread_id], table
        assert [r for r in rows[table] if r["thread_id"] == kept[0].thread_id], table


def _tombstone(event: Any, *, erase: bool) -> ThreadDeleted:
    return ThreadDeleted(
        id=new_id("evt"),
        tenant_id=event.tenant_id,
        user_id=event.user_id,
        thread_id=event.thread_id,
        data=ThreadDeletedData(erase=erase, requested_by=event.user_id),
    )


async def test_audit_log_is_exact_and_tenant_scoped(pg: Database, story: Any) -> None:
    tenant, other = new_id("ten"), new_id("ten")
    entries = [
        AuditEntry(
            id=f"aud-{n:04d}-xyz",
            tenant_id=tenant if n % 3 else other,
            action="auth.login" if n % 2 else "auth.login_failed",
            outcome="success",
            service="auth",
        )
        for n in range(9)
    ]
    batch = [
        Delivery(n + 1, audit_subject(e.tenant_id), e.model_dump_json().encode())
        for n, e in enumerate(entries)
    ]
    forged = Delivery(50, audit_subject(tenant), entries[0].model_dump_json().encode())
    projection = AuditProjection(pg)
    for chunk in story.chaotic(batch):
        await projection.apply(chunk)
    await projection.apply([forged])
    page = await HistoryReads(pg).audit_list(AuditList(tenant_id=tenant, actions=["auth.login"]))
    assert sorted(e["id"] for e in page.entries) == sorted(
        e.id for e in entries if e.tenant_id == tenant and e.action == "auth.login"
    )
    assert await projection.position() == 50
    async with pg.writer() as conn:
        with pytest.raises(DBAPIError, match="append-only"):
            await conn.execute(text("UPDATE apex.audit_log SET outcome = 'failure'"))


async def test_a_cancelled_run_stays_cancelled_whatever_arrives_after_in_any_order(
    pg: Database, story: Any
) -> None:
    events = story.run(end="cancelled", tools=1)
    late = events[3].model_copy(
        update={"id": f"{events[3].id}:late"}
    )  # an agent still thinking after the cancel
    batch = story.deliveries([*events, late])
    for order in (batch, list(reversed(batch)), [batch[-1], *batch[:-1]]):
        async with pg.writer() as conn:
            for table in VIEW_TABLES:
                await conn.execute(text(f"DELETE FROM apex.{table}"))
        projection = PostgresProjection(pg)
        for delivery in order:
            await projection.apply([delivery])
        run = await HistoryReads(pg).run_get(
            RunGet(tenant_id=story.tenant_id, user_id=story.user_id, run_id=str(events[0].run_id))
        )
        assert (run.status, run.tool_calls, run.error_code) == ("cancelled", 1, "run_cancelled")
