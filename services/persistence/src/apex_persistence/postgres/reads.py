"""Read queries over the history, each in a tenant-scoped reader transaction (row-level
security) and each also filtering by tenant and user itself: two walls. A thread or run
of another tenant or another user is ``NotFound``, exactly like one that does not exist."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Select, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from apex_contracts import InvalidInput, NotFound
from apex_contracts.audit import AuditEntry
from apex_contracts.queries import (
    ArchivedEvent,
    AuditList,
    AuditPage,
    ChatMessage,
    EventsArchive,
    EventsPage,
    RecentRun,
    RunGet,
    RunsPage,
    RunsRecent,
    ThreadDetail,
    ThreadGet,
    ThreadsList,
    ThreadsPage,
    ThreadSummary,
)
from apex_persistence.postgres import coverage
from apex_persistence.postgres.db import Database
from apex_persistence.postgres.tables import audit_log, events, messages, runs, threads
from apex_persistence.projection.facts import UNTITLED
from apex_persistence.views import RunView


def encode_cursor(updated_at: datetime, thread_id: str) -> str:
    raw = orjson.dumps([updated_at.isoformat(), thread_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The (updated_at, id) a page ended at; raises InvalidInput for anything else."""
    try:
        at, thread_id = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return datetime.fromisoformat(at), str(thread_id)
    except (binascii.Error, orjson.JSONDecodeError, ValueError, TypeError) as exc:
        raise InvalidInput("the cursor is not one this API returned") from exc


def _like_pattern(search: str) -> str:
    escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _visible_thread(tenant_id: str, user_id: str, thread_id: str) -> Select[Any]:
    return select(threads).where(
        threads.c.id == thread_id,
        threads.c.tenant_id == tenant_id,
        threads.c.user_id == user_id,
        threads.c.deleted_at.is_(None),
    )


async def _thread_row(conn: AsyncConnection, tenant_id: str, user_id: str, thread_id: str) -> Any:
    row = (await conn.execute(_visible_thread(tenant_id, user_id, thread_id))).first()
    if row is None:
        raise NotFound(f"thread {thread_id} not found")
    return row


class HistoryReads:
    """Threads, messages, runs, the event archive and the audit log, for one caller."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def threads_list(self, q: ThreadsList) -> ThreadsPage:
        stmt = (
            select(threads.c.id, threads.c.title, threads.c.created_at, threads.c.updated_at)
            .where(
                threads.c.tenant_id == q.tenant_id,
                threads.c.user_id == q.user_id,
                threads.c.deleted_at.is_(None),
            )
            .order_by(threads.c.updated_at.desc(), threads.c.id.desc())
            .limit(q.limit + 1)
        )
        if q.search:
            stmt = stmt.where(threads.c.title.ilike(_like_pattern(q.search), escape="\\"))
        if q.cursor:
            at, thread_id = decode_cursor(q.cursor)
            stmt = stmt.where(tuple_(threads.c.updated_at, threads.c.id) < tuple_(at, thread_id))
        async with self.db.reader(q.tenant_id) as conn:
            rows = (await conn.execute(stmt)).all()
        page = rows[: q.limit]
        more = len(rows) > q.limit
        return ThreadsPage(
            threads=[
                ThreadSummary(
                    id=r.id, title=r.title or UNTITLED, created_at=r.created_at, updated_at=r.updated_at
                )
                for r in page
            ],
            next_cursor=encode_cursor(page[-1].updated_at, page[-1].id) if more else None,
        )

    async def thread_get(self, q: ThreadGet) -> ThreadDetail:
        async with self.db.reader(q.tenant_id) as conn:
            thread = await _thread_row(conn, q.tenant_id, q.user_id, q.thread_id)
            rows = (
                await conn.execute(
                    select(messages)
                    .where(messages.c.thread_id == q.thread_id, messages.c.tenant_id == q.tenant_id)
                    .order_by(messages.c.seq, messages.c.id)
                )
            ).all()
        return ThreadDetail(
            id=thread.id,
            title=thread.title or UNTITLED,
            created_at=thread.created_at,
            updated_at=thread.updated_at,
            messages=[
                ChatMessage(id=m.id, role=m.role, content=m.content, run_id=m.run_id, created_at=m.created_at)
                for m in rows
            ],
        )

    async def run_get(self, q: RunGet) -> RunView:
        async with self.db.reader(q.tenant_id) as conn:
            row = (
                await conn.execute(
                    select(runs).where(
                        runs.c.id == q.run_id,
                        runs.c.tenant_id == q.tenant_id,
                        runs.c.user_id == q.user_id,
                    )
                )
            ).first()
        if row is None:
            raise NotFound(f"run {q.run_id} not found")
        return RunView(
            id=row.id,
            thread_id=row.thread_id,
            status=row.status,
            started_at=row.started_at,
            ended_at=row.ended_at,
            duration_ms=row.duration_ms,
            tool_calls=row.tool_calls,
            llm_tokens=row.reported_tokens if row.reported_tokens is not None else row.llm_tokens,
            llm_cost_usd=row.llm_cost_usd,
            error_code=row.error_code,
        )

    async def runs_recent(self, q: RunsRecent) -> RunsPage:
        async with self.db.reader(q.tenant_id) as conn:
            rows = (
                await conn.execute(
                    select(runs)
                    .where(runs.c.tenant_id == q.tenant_id)
                    .order_by(runs.c.updated_at.desc(), runs.c.id)
                    .limit(q.limit)
                )
            ).all()
        return RunsPage(
            runs=[
                RecentRun(
                    id=r.id,
                    user_id=r.user_id,
                    thread_id=r.thread_id,
                    status=r.status,
                    started_at=r.started_at,
                    ended_at=r.ended_at,
                    duration_ms=r.duration_ms,
                    tool_calls=r.tool_calls,
                    error_code=r.error_code,
                )
                for r in rows
            ]
        )

    async def events_archive(self, q: EventsArchive) -> EventsPage:
        async with self.db.reader(q.tenant_id) as conn:
            await _thread_row(conn, q.tenant_id, q.user_id, q.thread_id)
            # read before the events: a range received meanwhile is only reported missing
            gaps = await coverage.missing(conn, q.after_seq, q.before_seq) if q.before_seq else None
            rows = (
                await conn.execute(
                    select(events.c.seq, events.c.payload)
                    .where(
                        events.c.thread_id == q.thread_id,
                        events.c.tenant_id == q.tenant_id,
                        events.c.seq > q.after_seq,
                    )
                    .order_by(events.c.seq)
                    .limit(q.limit)
                )
            ).all()
        return EventsPage(
            events=[ArchivedEvent(seq=r.seq, event=r.payload) for r in rows],
            first_seq=rows[0].seq if rows else None,
            last_seq=rows[-1].seq if rows else None,
            missing=gaps,
        )

    async def audit_list(self, q: AuditList) -> AuditPage:
        stmt = (
            select(audit_log)
            .where(audit_log.c.tenant_id == q.tenant_id)
            .order_by(audit_log.c.at.desc(), audit_log.c.id.desc())
            .limit(q.limit)
        )
        if q.before is not None:
            stmt = stmt.where(audit_log.c.at < q.before)
        if q.actions:
            stmt = stmt.where(audit_log.c.action.in_(q.actions))
        async with self.db.reader(q.tenant_id) as conn:
            rows = (await conn.execute(stmt)).all()
        return AuditPage(
            entries=[AuditEntry.model_validate(row._asdict()).model_dump(mode="json") for row in rows],
            next_before=rows[-1].at if len(rows) == q.limit else None,
        )
