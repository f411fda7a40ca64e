"""Server-Sent Events of one thread (``GET /api/v1/threads/{id}/stream``): the same seam
as a socket's subscription, not a consumer of its own. A ``ThreadSubscription`` joins the
thread's live feed (``ws/feeds.py``), replays from the archive and the stream, and hands
its frames to an ``SseSink``; the response writes them as SSE (``id`` is the seq, so a
reconnecting client resumes with ``Last-Event-ID``).

The sink holds at most ``ws_send_queue`` frames for the response to write. A replay waits
for room (up to ``ws_send_timeout_ms``); a frame that finds no room ends the stream with
an ``error`` event ``slow_consumer``: the client resumes with ``Last-Event-ID`` like any
dropped one. A ``replay_incomplete`` gap is an ``error`` event where it falls in seq
order; a subscription that cannot start or read is an ``error`` event with its code."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson

from apex_contracts import ApexError, ErrorCode, new_id
from apex_contracts.envelope import Model
from apex_contracts.errors import CATALOGUE
from apex_contracts.frames import ErrorFrame
from apex_gateway.drain import StreamDrained, next_or_end, sse_shutting_down
from apex_gateway.reconnect import reconnect_spread_ms
from apex_gateway.services import GatewayServices
from apex_gateway.tokens import Principal
from apex_gateway.ws.outbox import Group, Outbox
from apex_gateway.ws.subscription import ThreadSubscription

log = logging.getLogger(__name__)
KEEP_ALIVE_S = 15.0


def sse_error(body: dict[str, Any]) -> bytes:
    return b"event: error\ndata: %s\n\n" % orjson.dumps(body)


class SseSink:
    """``EventSink`` of one SSE response. ``end`` is set when the stream must stop (the
    gateway drains, the sink overflowed, or the subscription failed or was dropped)."""

    def __init__(self, limit: int, room_timeout_s: float, end: asyncio.Event) -> None:
        self.out = Outbox(limit)
        self.end = end
        self._room_timeout_s = room_timeout_s
        self.last: bytes | None = None  # the stream's last words, when it ends on its own
        self._dropped = False  # overflowed: nothing more is queued (the client resumes)

    def send(self, frame: Model) -> None:
        if self._dropped or not isinstance(frame, ErrorFrame):
            return  # thread.subscribed and answers have no SSE twin
        body = frame.model_dump(mode="json", exclude_none=True, exclude={"type", "ref"})
        if not self.out.put(sse_error(body).decode()):
            self._overflow()

    def push_event(self, frame: str, occurred_at: float | None = None, group: Group | None = None) -> None:
        if self._dropped:  # each event is its own SSE message: ``group`` does not apply
            return
        if not self.out.put(_sse_event(frame)):
            self._overflow()

    async def room(self) -> bool:
        if self.end.is_set():
            return False
        if not await self.out.room(self._room_timeout_s):
            self._overflow()
            return False
        return not self.end.is_set()

    def drop_subscription(self, thread_id: str) -> None:
        self.finish(None)

    def finish(self, last: bytes | None) -> None:
        """Ends the stream once the frames already queued are written, then ``last``."""
        if not self.end.is_set():
            self.last = last
            self.end.set()

    def _overflow(self) -> None:
        self._dropped = True  # a later frame written after the dropped ones would be a gap
        self.out.clear()  # the client resumes from its Last-Event-ID
        spec = CATALOGUE[ErrorCode.SLOW_CONSUMER]
        code = ErrorCode.SLOW_CONSUMER.value
        self.finish(sse_error({"code": code, "message": spec.message, "retryable": spec.retryable}))


def _sse_event(frame: str) -> str:
    """An ``event`` frame of apex.v1 as one SSE event."""
    body = orjson.loads(frame)
    del body["type"]
    kind = str(body["event"].get("type", "event"))
    return f"id: {body['seq']}\nevent: {kind}\ndata: {orjson.dumps(body).decode()}\n\n"


async def sse_stream(
    services: GatewayServices, who: Principal, subject: str, thread_id: str, after: int
) -> AsyncIterator[bytes]:
    settings = services.settings
    end = services.streams.open()
    draining = end.is_set()
    sink = SseSink(settings.ws_send_queue, settings.ws_send_timeout_ms / 1000, end)
    sub = ThreadSubscription(sink, services.subscriptions, who, thread_id, subject, after)

    async def start() -> None:
        try:
            await sub.start()
        except ApexError as exc:
            log.info("event stream of %s failed: %s", thread_id, exc.message)
            sink.finish(
                sse_error({"code": exc.code.value, "message": exc.message, "retryable": exc.retryable})
            )
        except Exception:  # the boundary: a defect ends this stream, told, never silently
            incident = new_id("evt")
            log.exception("event stream of %s failed (incident %s)", thread_id, incident)
            spec = CATALOGUE[ErrorCode.INTERNAL_ERROR]
            code = ErrorCode.INTERNAL_ERROR.value
            sink.finish(
                sse_error({"code": code, "message": spec.message, "retryable": True, "incident": incident})
            )

    starting = asyncio.ensure_future(start())
    try:
        yield b"retry: 1000\n\n"
        while True:
            try:
                item = await next_or_end(sink.out, end, KEEP_ALIVE_S)
            except StreamDrained:
                if sink.last is None and (draining or services.streams.stopping):
                    # the gateway is stopping: say so, and spread the reconnects
                    yield sse_shutting_down(reconnect_spread_ms(settings.gateway_drain_s))
                    return
                while len(sink.out):  # what the subscription queued before it ended
                    text, _ = await sink.out.get()
                    yield text.encode()
                if sink.last is not None:
                    yield sink.last
                return
            if item is None:
                yield b": keep-alive\n\n"
                continue
            yield item[0].encode()
    finally:
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await starting
        services.streams.close(end)
        await sub.stop()
