"""What each client frame does. One small handler per frame type."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from apex_contracts import ApexError, AuthFailed, ErrorCode, NotFound, subjects
from apex_contracts.dedupe_ids import thread_id_for
from apex_contracts.frames import (
    ClientFrame,
    EventAck,
    MessageAccepted,
    Ping,
    Pong,
    RunCancelFrame,
    SessionRefresh,
    SessionRefreshed,
    SocketMessageSend,
    ThreadSubscribe,
    ThreadUnsubscribe,
)
from apex_gateway.ws.subscription import ThreadSubscription

if TYPE_CHECKING:
    from apex_gateway.ws.connection import Connection


async def dispatch(conn: Connection, frame: ClientFrame) -> None:
    match frame:
        case SocketMessageSend():
            await on_message_send(conn, frame)
        case ThreadSubscribe():
            await on_subscribe(conn, frame)
        case ThreadUnsubscribe():
            await on_unsubscribe(conn, frame)
        case EventAck():
            await on_ack(conn, frame)
        case RunCancelFrame():
            await conn.services.messages.cancel(conn.principal, frame.run_id)
        case Ping():
            await conn.acks.settled()  # a pong says every earlier ack is stored
            conn.send(Pong(ref=frame.ref))
        case SessionRefresh():
            await on_refresh(conn, frame)


async def on_refresh(conn: Connection, frame: SessionRefresh) -> None:
    """A new access token for this socket: same user, tenant and session, verified like a
    handshake's. A refused one changes nothing (the socket lives until its current token
    expires)."""
    fresh = await conn.services.verifier.verify(frame.token)
    now = conn.principal
    if (fresh.user_id, fresh.tenant_id, fresh.session_id) != (now.user_id, now.tenant_id, now.session_id):
        raise AuthFailed(
            "session.refresh needs a token of the same user and session.", code=ErrorCode.TOKEN_INVALID
        )
    conn.principal = fresh
    conn.send(SessionRefreshed(ref=frame.ref, expires_at=fresh.expires_at))


async def on_message_send(conn: Connection, frame: SocketMessageSend) -> None:
    """Stores the message and starts its run, then subscribes the connection from the
    message's own event. The subscription joins the thread's live feed while the message
    is being stored (the thread's id is known beforehand: the given one, or the one derived
    from ``client_msg_id``), so the message's event comes from the feed and no replay read
    waits behind the send; its frames still follow ``message.accepted``."""
    who = conn.principal
    thread_id = frame.thread_id or thread_id_for(who.tenant_id, who.user_id, frame.client_msg_id)
    early: ThreadSubscription | None = None
    joining: asyncio.Future[None] | None = None
    if thread_id not in conn.subscriptions:
        early = _subscription(conn, thread_id, 0, frame.max_batch)
        joining = asyncio.ensure_future(early.join())
    try:
        accepted = await conn.services.messages.send(who, frame.client_msg_id, frame.text, frame.thread_id)
    except BaseException:
        if early is not None:
            await _abandon(early, joining)
        raise
    conn.send(
        MessageAccepted(
            ref=frame.ref,
            client_msg_id=frame.client_msg_id,
            thread_id=accepted.thread_id,
            run_id=accepted.run_id,
        )
    )
    after = max(0, accepted.message_seq - 1)
    if early is not None and accepted.thread_id == thread_id and thread_id not in conn.subscriptions:
        assert joining is not None
        early.resume_after(after, stored_through=accepted.message_seq)
        conn.subscriptions[thread_id] = early
        await _started(conn, early, frame.ref, joining)
        if early.joined_at == 0 and not accepted.duplicate:
            # the thread had no event when its feed started: nobody can have acked one,
            # so its cursor starts at 0 without asking persistence for a stored one
            conn.acks.fresh(thread_id)
        return
    if early is not None:  # a retried client_msg_id whose run is on another thread
        await _abandon(early, joining)
    if accepted.thread_id not in conn.subscriptions:
        await subscribe(conn, accepted.thread_id, after, ref=frame.ref, max_batch=frame.max_batch)


async def _abandon(sub: ThreadSubscription, joining: asyncio.Future[None] | None) -> None:
    """Leaves the feed a subscription joined (or is joining) for a send that failed."""
    if joining is not None:
        await asyncio.gather(joining, return_exceptions=True)
    await sub.stop()


async def on_subscribe(conn: Connection, frame: ThreadSubscribe) -> None:
    who = conn.principal
    if not await conn.services.messages.thread_exists(who, frame.thread_id):
        await conn.services.audit_probe(who, "thread", frame.thread_id, via="ws thread.subscribe")
        raise NotFound("No such thread.", details={"ref": frame.ref})
    after = frame.after_seq
    if frame.epoch is not None and frame.epoch != conn.services.epoch:
        after = 0  # seqs of another stream incarnation are not comparable: replay everything
    elif after == "cursor":
        await conn.acks.settled(frame.thread_id)  # this connection's acks count
        after = await conn.services.cursors.get(who, frame.thread_id)
    existing = conn.subscriptions.pop(frame.thread_id, None)
    if existing is not None:
        await existing.stop()
    await subscribe(conn, frame.thread_id, after, ref=frame.ref, max_batch=frame.max_batch)


async def subscribe(
    conn: Connection, thread_id: str, after_seq: int, ref: str | None, max_batch: int = 1
) -> None:
    sub = _subscription(conn, thread_id, after_seq, max_batch)
    conn.subscriptions[thread_id] = sub
    await _started(conn, sub, ref)


def _subscription(conn: Connection, thread_id: str, after_seq: int, max_batch: int) -> ThreadSubscription:
    who = conn.principal
    subject = subjects.thread_events(who.tenant_id, who.user_id, thread_id)
    return ThreadSubscription(
        conn, conn.services.subscriptions, who, thread_id, subject, after_seq, max_batch
    )


async def _started(
    conn: Connection, sub: ThreadSubscription, ref: str | None, joining: asyncio.Future[None] | None = None
) -> None:
    """Starts a subscription the connection holds (after its join under way, if any); a
    failure takes it off the connection and off its feed."""
    try:
        if joining is not None:
            await joining
        await sub.start(ref=ref)
    except ApexError:
        if conn.subscriptions.get(sub.thread_id) is sub:
            del conn.subscriptions[sub.thread_id]
        await sub.stop()
        raise


async def on_unsubscribe(conn: Connection, frame: ThreadUnsubscribe) -> None:
    sub = conn.subscriptions.pop(frame.thread_id, None)
    if sub is not None:
        await sub.stop()


async def on_ack(conn: Connection, frame: EventAck) -> None:
    sub = conn.subscriptions.get(frame.thread_id)
    if sub is None:
        raise NotFound("Not subscribed to that thread.", details={"ref": frame.ref})
    sub.ack(frame.seq)
    conn.services.metrics.events_acked.inc()
    conn.acks.ask(frame.thread_id, sub.window.acked, frame.ref)  # stored behind the next frames
