"""One client WebSocket speaking ``apex.v1``.

Frames out go through one writer task: control frames (answers, errors) and event frames
share a queue, but only ``ws_send_queue`` event frames may wait at once; a connection that
cannot keep up gets ``resync_required`` for the thread instead of unbounded memory. Frames
in are read only after ``session.ready`` was sent, so early frames wait, in order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from apex_contracts import ApexError, ErrorCode, RateLimited, new_id
from apex_contracts.envelope import Model
from apex_contracts.frames import (
    CLOSE_SERVICE_RESTART,
    PROTOCOL,
    ErrorFrame,
    SessionReady,
    parse_client_frame,
)
from apex_gateway.ratelimit import TokenBucket
from apex_gateway.ws.dispatch import dispatch
from apex_gateway.ws.subscription import ThreadSubscription

if TYPE_CHECKING:
    from apex_gateway.services import GatewayServices
    from apex_gateway.tokens import Principal

log = logging.getLogger(__name__)


class Connection:
    def __init__(self, ws: WebSocket, principal: Principal, services: GatewayServices) -> None:
        self.ws = ws
        self.principal = principal
        self.services = services
        self.id = new_id("con")
        self.subscriptions: dict[str, ThreadSubscription] = {}
        self._out: asyncio.Queue[str | None] = asyncio.Queue()
        self._events_waiting = 0
        self._occurred: deque[float | None] = deque()  # one per queued event frame, in order
        self._limit = services.settings.ws_send_queue
        self._rate = TokenBucket(services.settings.ws_rate_per_s, services.settings.ws_rate_burst)
        self._user_rate = services.user_rate(principal.user_id)
        self._closing = False
        self._background: set[asyncio.Task[None]] = set()

    # --- sending -----------------------------------------------------------------------

    def send(self, frame: Model) -> None:
        """Queues a control frame (never refused)."""
        if not self._closing:
            self._out.put_nowait(frame.model_dump_json(exclude_none=True))

    def send_error(self, exc: ApexError, ref: str | None = None, **extra: Any) -> None:
        details = exc.details or {}
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

    def push_event(self, frame: str, occurred_at: float | None = None) -> bool:
        """Queues an event frame; False when this connection already has too many waiting.
        ``occurred_at`` (epoch seconds) is given for live events: their delivery latency
        is measured when the frame is written."""
        if self._closing:
            return True
        if self._events_waiting >= self._limit:
            return False
        self._events_waiting += 1
        self._out.put_nowait("\x00" + frame)
        self._occurred.append(occurred_at)
        self.services.metrics.events_sent.inc()
        return True

    def drop_subscription(self, thread_id: str) -> None:
        sub = self.subscriptions.pop(thread_id, None)
        if sub is not None:
            task = asyncio.create_task(sub.stop())
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    def resend_due(self, now: float) -> None:
        """Frames whose ack is overdue are sent again (same seq); called every second."""
        for sub in list(self.subscriptions.values()):
            sub.resend_due(now)

    async def _writer(self) -> None:
        while True:
            text = await self._out.get()
            if text is None:
                return
            occurred = None
            if text.startswith("\x00"):
                self._events_waiting -= 1
                text = text[1:]
                occurred = self._occurred.popleft()
            await self.ws.send_text(text)
            if occurred is not None:
                self.services.metrics.observe_delivery(time.time() - occurred)

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
            limits={"max_frame_bytes": settings.ws_max_frame_bytes, "send_queue": settings.ws_send_queue},
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
            self._out.put_nowait(None)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, RuntimeError, WebSocketDisconnect):
                await writer

    async def _read_loop(self, writer: asyncio.Task[None]) -> None:
        idle_s = self.services.settings.ws_heartbeat_ms * 2.5 / 1000
        while True:
            try:
                async with asyncio.timeout(idle_s):  # no extra task per receive, unlike wait_for
                    message = await self.ws.receive()
            except TimeoutError:
                await self.close(1001, "idle_timeout")
                return
            if message["type"] == "websocket.disconnect":
                return
            if writer.done():
                return
            text = message.get("text")
            if text is None and message.get("bytes") is not None:
                text = message["bytes"].decode("utf-8", errors="replace")
            await self._handle(text or "")

    async def _handle(self, text: str) -> None:
        wait_ms = self._rate.take() or self._user_rate.take()
        if wait_ms:
            self.send_error(RateLimited("Too many frames; slow down.", retry_after_ms=wait_ms))
            return
        try:
            frame = parse_client_frame(text)
        except ApexError as exc:
            self.send_error(exc)
            return
        try:
            await dispatch(self, frame)
        except ApexError as exc:
            self.send_error(exc, ref=frame.ref)

    async def close(self, code: int, reason: str) -> None:
        self._closing = True
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await self.ws.close(code=code, reason=reason)

    async def drain(self) -> None:
        await self.close(CLOSE_SERVICE_RESTART, ErrorCode.SHUTTING_DOWN.value)
