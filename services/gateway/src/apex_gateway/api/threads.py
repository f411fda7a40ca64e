"""Threads and their events over HTTP: the read side through persistence, the event log
directly from the stream (the same ids and order as the WebSocket)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse
from pydantic import Field

from apex_contracts import NotFound, subjects
from apex_contracts.envelope import Model
from apex_contracts.events import client_view
from apex_contracts.frames import UserText
from apex_contracts.queries import ThreadDetail, ThreadsPage
from apex_gateway.deps import CurrentUser, Services
from apex_gateway.errors import ErrorBody
from apex_gateway.history import NextEvent, ReplayIncomplete
from apex_gateway.services import GatewayServices
from apex_gateway.sse import sse_stream
from apex_gateway.tokens import Principal

router = APIRouter(prefix="/api/v1/threads", tags=["threads"])


@router.get("", response_model=ThreadsPage)
async def list_threads(
    who: CurrentUser,
    services: Services,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
    search: Annotated[UserText | None, Query(max_length=200)] = None,
) -> ThreadsPage:
    return await services.threads.list(who, limit, cursor, search)


@router.get("/{thread_id}", response_model=ThreadDetail)
async def get_thread(thread_id: str, who: CurrentUser, services: Services) -> ThreadDetail:
    await _owned(services, who, thread_id, "GET /api/v1/threads/{thread_id}")
    return await services.threads.get(who, thread_id)


class ThreadEvent(Model):
    seq: int
    event: dict[str, Any]


class ThreadEvents(Model):
    thread_id: str
    events: list[ThreadEvent]
    next_after_seq: int
    head_seq: int
    more: bool


@router.get(
    "/{thread_id}/events",
    response_model=ThreadEvents,
    responses={
        410: {
            "model": ErrorBody,
            "description": "replay_incomplete: `details.gap_from` to `details.gap_to` cannot be read; history resumes at `details.first_seq`",
        }
    },
)
async def thread_events(
    thread_id: str,
    who: CurrentUser,
    services: Services,
    after_seq: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
    wait_ms: Annotated[int, Query(ge=0, le=120_000)] = 0,
) -> ThreadEvents:
    """Events with seq > after_seq, oldest first; ``next_after_seq`` pages forward. With
    ``wait_ms`` this is a long-poll: when there is no such event yet, the answer waits up
    to ``wait_ms`` (at most ``APEX_HTTP_LONG_POLL_MAX_MS``) for the next one. Events the
    stream no longer holds come from the archive; when it cannot answer, or holds a gap:
    the events before the gap, then 410 ``replay_incomplete`` with ``details.gap_from``,
    ``gap_to`` and ``first_seq`` (ask with ``after_seq = first_seq - 1`` to skip it)."""
    subject = await _owned(services, who, thread_id, "GET /api/v1/threads/{thread_id}/events")
    page = await _events_after(services, who, thread_id, subject, after_seq, limit)
    wait_s = min(wait_ms, services.settings.http_long_poll_max_ms) / 1000
    if page.events or wait_s <= 0:
        return page
    waiter = NextEvent(after_seq)
    await services.feeds.join(subject, thread_id, waiter)
    try:
        # joined first, then looked again: an event stored in between is not missed
        if await services.history.head(subject) <= after_seq:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter.arrived.wait(), wait_s)
    finally:
        await services.feeds.leave(subject, waiter)
    page = await _events_after(services, who, thread_id, subject, after_seq, limit)
    services.metrics.long_polls.labels("events" if page.events else "timeout").inc()
    return page


async def _events_after(
    services: GatewayServices, who: Principal, thread_id: str, subject: str, after_seq: int, limit: int
) -> ThreadEvents:
    history = services.history
    first_kept, head = await asyncio.gather(history.first_kept(), history.head(subject))
    events: list[ThreadEvent] = []
    after = after_seq
    if after + 1 < first_kept:
        archive = await history.archived(who, thread_id, after, first_kept, limit)
        for item in archive.in_order():
            if isinstance(item[1], int):  # a gap: what precedes it is served first, then the gap
                if not events:
                    raise ReplayIncomplete(thread_id, item[1] + 1, item[0])
                return ThreadEvents(
                    thread_id=thread_id,
                    events=events,
                    next_after_seq=events[-1].seq,
                    head_seq=head,
                    more=True,
                )
            events.append(ThreadEvent(seq=item[0], event=client_view(item[1])))
        after = max(after, first_kept - 1) if len(events) < limit else events[-1].seq
        head = max(head, events[-1].seq if events else 0)
    if len(events) < limit:
        async for seq, data in history.read(subject, after_seq=after, batch=min(limit, 1000)):
            events.append(ThreadEvent(seq=seq, event=client_view(orjson.loads(data))))
            if len(events) >= limit:
                break
    last = events[-1].seq if events else after_seq
    return ThreadEvents(
        thread_id=thread_id, events=events, next_after_seq=last, head_seq=head, more=last < head
    )


@router.get("/{thread_id}/stream", response_class=StreamingResponse)
async def stream_events(
    thread_id: str,
    who: CurrentUser,
    services: Services,
    last_event_id: Annotated[str | None, Header()] = None,
    after_seq: Annotated[int, Query(ge=0)] = 0,
) -> StreamingResponse:
    """Server-Sent Events: ``id`` is the seq, so a reconnecting client resumes with
    ``Last-Event-ID``. Events the stream no longer holds come from the archive first;
    when it cannot answer or holds a gap, an ``error`` event says ``replay_incomplete``
    with the range (``gap_from``, ``gap_to``) and ``first_seq`` before the events that
    are still there. The replay and the live events come through the same subscription
    as a socket's (``apex_gateway.sse``); a client that does not read is ended with an
    ``error`` event ``slow_consumer`` and resumes with ``Last-Event-ID``."""
    subject = await _owned(services, who, thread_id, "GET /api/v1/threads/{thread_id}/stream")
    start = int(last_event_id) if last_event_id and last_event_id.isdigit() else after_seq
    return StreamingResponse(
        sse_stream(services, who, subject, thread_id, start),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _owned(services: GatewayServices, who: Principal, thread_id: str, via: str) -> str:
    """The thread's subject when it is the caller's: events in the stream, or only in the
    archive (beyond retention). Anyone else's, or none, is not_found (and audited, with
    the route it came through)."""
    subject = subjects.thread_events(who.tenant_id, who.user_id, thread_id)
    if not await services.messages.thread_exists(who, thread_id):
        await services.audit_probe(who, "thread", thread_id, via=via)
        raise NotFound("No such thread.")
    return subject


class PostMessage(Model):
    text: UserText = Field(min_length=1, max_length=16_000)


@router.post("/{thread_id}/messages", status_code=202)
async def post_message(
    thread_id: str,
    body: PostMessage,
    who: CurrentUser,
    services: Services,
    idempotency_key: Annotated[str, Header(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_\-:.]+$")],
) -> dict[str, str]:
    """The HTTP twin of ``message.send``: the same Idempotency-Key returns the same run."""
    await _owned(services, who, thread_id, "POST /api/v1/threads/{thread_id}/messages")
    accepted = await services.messages.send(
        who, idempotency_key, body.text, thread_id, via="POST /api/v1/threads/{thread_id}/messages"
    )
    return {"thread_id": accepted.thread_id, "run_id": accepted.run_id, "client_msg_id": idempotency_key}


class RenameThread(Model):
    title: UserText = Field(min_length=1, max_length=200)


@router.patch("/{thread_id}", status_code=202)
async def rename_thread(
    thread_id: str, body: RenameThread, who: CurrentUser, services: Services
) -> dict[str, str]:
    """Appends ``thread.renamed``; the thread list shows the new title once projected."""
    await _owned(services, who, thread_id, "PATCH /api/v1/threads/{thread_id}")
    await services.threads.rename(who, thread_id, body.title.strip())
    return {"thread_id": thread_id, "title": body.title.strip()}


@router.delete("/{thread_id}", status_code=202)
async def delete_thread(
    thread_id: str,
    who: CurrentUser,
    services: Services,
    erase: bool = False,
) -> dict[str, object]:
    """Appends the ``thread.deleted`` tombstone: the thread disappears from every view;
    with ``erase=true`` its content is removed from every store and the archive."""
    subject = await _owned(services, who, thread_id, "DELETE /api/v1/threads/{thread_id}")
    await services.threads.delete(who, thread_id, subject, erase=erase)
    if erase:
        await services.cursors.forget(who, thread_id)
    return {"thread_id": thread_id, "deleted": True, "erase": erase}
