"""What each client frame does. One small handler per frame type."""

from __future__ import annotations

from typing import TYPE_CHECKING

from apex_contracts import ApexError, AuthFailed, ErrorCode, NotFound, subjects
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
    accepted = await conn.services.messages.send(
        conn.principal, frame.client_msg_id, frame.text, frame.thread_id
    )
    conn.send(
        MessageAccepted(
            ref=frame.ref,
            client_msg_id=frame.client_msg_id,
            thread_id=accepted.thread_id,
            run_id=accepted.run_id,
        )
    )
    if accepted.thread_id not in conn.subscriptions:
        await subscribe(
            conn,
            accepted.thread_id,
            max(0, accepted.message_seq - 1),
            ref=frame.ref,
            max_batch=frame.max_batch,
        )


async def on_subscribe(conn: Connection, frame: ThreadSubscribe) -> None:
    who = conn.principal
    if not await conn.services.messages.thread_exists(who, frame.thread_id):
        await conn.services.audit_probe(who, "thread", frame.thread_id, via="ws thread.subscribe")
        raise NotFound("No such thread.", details={"ref": frame.ref})
    after = frame.after_seq
    if frame.epoch is not None and frame.epoch != conn.services.epoch:
        after = 0  # seqs of another stream incarnation are not comparable: replay everything
    elif after == "cursor":
        after = await conn.services.cursors.get(who, frame.thread_id)
    existing = conn.subscriptions.pop(frame.thread_id, None)
    if existing is not None:
        await existing.stop()
    await subscribe(conn, frame.thread_id, after, ref=frame.ref, max_batch=frame.max_batch)


async def subscribe(
    conn: Connection, thread_id: str, after_seq: int, ref: str | None, max_batch: int = 1
) -> None:
    who = conn.principal
    subject = subjects.thread_events(who.tenant_id, who.user_id, thread_id)
    sub = ThreadSubscription(conn, conn.services.subscriptions, who, thread_id, subject, after_seq, max_batch)
    conn.subscriptions[thread_id] = sub
    try:
        await sub.start(ref=ref)
    except ApexError:
        if conn.subscriptions.get(thread_id) is sub:
            del conn.subscriptions[thread_id]
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
    await conn.services.cursors.advance(conn.principal, frame.thread_id, sub.window.acked)
