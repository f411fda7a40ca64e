"""One client WebSocket speaking ``apex.v1``.

Frames out go through one writer task and one bounded outbox (``outbox.py``): events,
answers and errors alike, at most ``ws_send_queue`` of them. Event frames of a
subscription that asked for batches (``max_batch``) and are queued together are written
as one ``events`` frame. A frame that finds the
outbox full ends the connection with 4408 ``slow_consumer`` (the client resumes from its
cursor like any dropped client); a replay waits for room instead, up to
``ws_send_timeout_ms``. Acks are stored behind the frames that follow them
(``acks.py``). Frames in are read only after ``session.ready`` was sent, so early
frames wait, in order. Every frame in gets an answer or a typed error: a defect while
handling one is an ``internal_error`` frame with an ``incident`` id, and the socket lives on.

The server ends a connection (idle, slow consumer, token expired, session revoked,
draining) with ``end``: the read loop stops, queued frames are dropped, and the close
frame is sent within ``ws_close_wait_ms`` (a client that reads nothing never gets it)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from apex_contracts import ApexError, ErrorCode, RateLimited, new_id
from apex_contracts.envelope import Model
from apex_contracts.frames import (
    CLOSE_GOING_AWAY,
    CLOSE_SERVICE_RESTART,
    CLOSE_SLOW_CONSUMER,
    PROTOCOL,
    ClientFrame,
    ErrorFrame,
    SessionReady,
    parse_client_frame,
)
from apex_gateway.ratelimit import TokenBucket
from apex_gateway.ws.acks import CursorWrites
from apex_gateway.ws.dispatch import dispatch
from apex_gateway.ws.feeds import events_frame
from apex_gateway.ws.outbox import Group, Outbox
from apex_gateway.ws.subscription import ThreadSubscription

if TYPE_CHECKING:
    from apex_gateway.services import GatewayServices
    from apex_gateway.tokens import Principal

log = logging.getLogger(__name__)
ACKS_ON_CLOSE_S = 5.0  # how long an ending connection still stores the acks it was sent


class Connection:
    def __init__(self, ws: WebSocket, principal: Principal, services: GatewayServices) -> None:
        self.ws = ws
        self.principal = principal
        self.services = services
        self.id = new_id("con")
        self.subscriptions: dict[str, ThreadSubscription] = {}
        settings = services.settings
        self._out = Outbox(settings.ws_send_queue)
        self._send_timeout_s = settings.ws_send_timeout_ms / 1000
        self._close_wait_s = settings.ws_close_wait_ms / 1000
        self._rate = TokenBucket(settings.ws_rate_per_s, settings.ws_rate_burst)
        self._muted_until = 0.0  # frames before this (loop time) are discarded, unanswered
        self._closing = False
        self._ending: tuple[int, str] | None = None
        self._receiving: asyncio.Timeout | None = None
        self._done = asyncio.Event()
        self._background: set[asyncio.Task[None]] = set()
        self.acks = CursorWrites(
            lambda thread_id, seq: services.cursors.advance(self.principal, thread_id, seq),
            self._ack_refused,
            lambda thread_id: services.cursors.start_fresh(self.principal, thread_id),
        )

    @property
    def member(self) -> str:
        """This socket's name in the shared per-user connection count."""
        return f"{self.services.settings.instance_id}:{self.id}"

    # --- sending -----------------------------------------------------------------------

    def send(self, frame: Model) -> None:
        """Queues an answer or an error; a full outbox ends the connection (4408)."""
        if not self._closing and not self._out.put(frame.model_dump_json(exclude_none=True)):
            self._slow_consumer()

    def send_error(self, exc: ApexError, ref: str | None = None, **extra: Any) -> None:
        details = exc.details or {}
        self.services.metrics.errors.labels(exc.code.value).inc()
        self.send(
            ErrorFrame(
                code=exc.code.value,
                message=exc.message,
                retryable=exc.retryable,
                ref=ref or details.get("ref"),
                retry_after_ms=details.get("retry_after_ms"),
                **extra,
            )
        )

    def _ack_refused(self, exc: ApexError, ref: str | None) -> None:
        self.send_error(exc, ref=ref, incident=(exc.details or {}).get("incident"))

    def push_event(self, frame: str, occurred_at: float | None = None, group: Group | None = None) -> None:
        """Queues an event frame; ``occurred_at`` (epoch seconds) is given for live events:
        their delivery latency is measured when the frame is written. Frames of a
        ``group`` queued together are written as one ``events`` frame."""
        if self._closing:
            return
        if not self._out.put(frame, occurred_at, group):
            self._slow_consumer()
            return
        self.services.metrics.events_sent.inc()

    async def room(self) -> bool:
        """Waits until the outbox takes one more frame (a replay's pace); False when the
        connection is ending, or ends now because the client read nothing for too long."""
        if self._closing:
            return False
        if not await self._out.room(self._send_timeout_s):
            self._slow_consumer()
            return False
        return not self._closing

    def drop_subscription(self, thread_id: str) -> None:
        sub = self.subscriptions.pop(thread_id, None)
        if sub is not None:
            self._in_background(sub.stop())

    def resend_due(self, now: float) -> None:
        """Frames whose ack is overdue are sent again (same seq); called every second."""
        for sub in list(self.subscriptions.values()):
            sub.resend_due(now)

    async def _writer(self) -> None:
        while True:
            group, frames = await self._out.get_group()
            if len(frames) == 1:
                await self.ws.send_text(frames[0][0])
            else:
                assert group is not None
                await self.ws.send_text(events_frame(group[0], [text for text, _ in frames]))
            now = time.time()
            for _, occurred in frames:
                if occurred is not None:
                    self.services.metrics.observe_delivery(now - occurred)

    def _slow_consumer(self) -> None:
        self._out.clear()  # what it did not read is dropped: it resumes from its cursor
        self.end(CLOSE_SLOW_CONSUMER, ErrorCode.SLOW_CONSUMER.value)

    def _in_background(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- the session ---------------------------------------------------------------------

    async def serve(self) -> None:
        settings = self.services.settings
        ready = SessionReady(
            connection_id=self.id,
            user_id=self.principal.user_id,
            tenant_id=self.principal.tenant_id,
            protocol=PROTOCOL,
            heartbeat_ms=settings.ws_heartbeat_ms,
            epoch=self.services.epoch,
            limits={
                "max_frame_bytes": settings.ws_max_frame_bytes,
                "send_queue": settings.ws_send_queue,
                "expires_at": self.principal.expires_at,
            },
        )
        await self.ws.send_text(ready.model_dump_json())
        writer = asyncio.create_task(self._writer(), name=f"ws-writer-{self.id}")
        try:
            await self._read_loop(writer)
        finally:
            self._closing = True
            for sub in list(self.subscriptions.values()):
                await sub.stop()
            self.subscriptions.clear()
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, RuntimeError, WebSocketDisconnect):
                await writer
            await self.acks.close(ACKS_ON_CLOSE_S)
            await self._send_close()
            self._done.set()

    async def _read_loop(self, writer: asyncio.Task[None]) -> None:
        idle_s = self.services.settings.ws_heartbeat_ms * 2.5 / 1000
        while self._ending is None and not writer.done():
            try:
                # one timeout per receive, no extra task (unlike wait_for); ``end``
                # moves it to now to stop the loop
                async with asyncio.timeout(idle_s) as self._receiving:
                    message = await self.ws.receive()
            except TimeoutError:
                if self._ending is None:
                    self._ending = (CLOSE_GOING_AWAY, "idle_timeout")
                return
            finally:
                self._receiving = None
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None and message.get("bytes") is not None:
                text = message["bytes"].decode("utf-8", errors="replace")
            await self._handle(text or "")

    async def _handle(self, text: str) -> None:
        now = asyncio.get_running_loop().time()
        if now < self._muted_until:
            # told once with rate_limited: the rest of its window is not answered
            self.services.metrics.frames_discarded.labels("rate_limited").inc()
            return
        wait_ms = self._rate.take() or await self.services.limits.take_frame(self.principal.user_id)
        if wait_ms:
            self._muted_until = now + wait_ms / 1000
            self.send_error(RateLimited("Too many frames; slow down.", retry_after_ms=wait_ms))
            return
        frame: ClientFrame | None = None
        try:
            frame = parse_client_frame(text)
            self.services.metrics.frames_in.labels(frame.type).inc()
            await dispatch(self, frame)
        except ApexError as exc:
            self.send_error(exc, ref=frame.ref if frame is not None else None)
        except Exception:  # the boundary: a defect answers this frame, the socket lives on
            incident = new_id("evt")
            log.exception("connection %s: frame failed (incident %s)", self.id, incident)
            self.services.metrics.errors.labels(ErrorCode.INTERNAL_ERROR.value).inc()
            self.send(
                ErrorFrame(
                    code=ErrorCode.INTERNAL_ERROR.value,
                    message="Something went wrong on our side; the connection is still open.",
                    retryable=True,
                    ref=frame.ref if frame is not None else None,
                    incident=incident,
                )
            )

    def end(self, code: int, reason: str) -> None:
        """Ends the connection with ``code``/``reason`` (the first reason given wins)."""
        self._closing = True
        if self._ending is None:
            self._ending = (code, reason)
            self.services.metrics.server_closes.labels(reason).inc()
        receiving = self._receiving
        if receiving is not None:
            with contextlib.suppress(RuntimeError):  # already expiring
                receiving.reschedule(asyncio.get_running_loop().time())

    async def _send_close(self) -> None:
        if self._ending is None:
            return
        code, reason = self._ending
        # a client that reads nothing never takes the close frame: do not wait for it forever
        with contextlib.suppress(RuntimeError, WebSocketDisconnect, TimeoutError):
            async with asyncio.timeout(self._close_wait_s):
                await self.ws.close(code=code, reason=reason)

    async def close(self, code: int, reason: str, wait_s: float | None = None) -> None:
        """Ends the connection and returns once it is closed, or after ``wait_s``."""
        self.end(code, reason)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._close_wait_s + 5 if wait_s is None else wait_s):
                await self._done.wait()

    async def drain(self) -> None:
        # a client that reads nothing must not hold the whole drain up
        await self.close(CLOSE_SERVICE_RESTART, ErrorCode.SHUTTING_DOWN.value, wait_s=5.0)
