"""Answering the bus API: one queue-group subscription per operation on
``apex.api.*.*.<operation>``; each request is answered on its reply subject with the
handler's frame, or with a typed ``error`` frame (the WebSocket's), never silence.

The tenant and user come from the subject, which the NATS server bound to the caller's
credentials (a service account may publish on its own ``apex.api.<tenant>.<user>.>``
only), so a handler acts as that principal; a request whose reply subject is not under
the caller's inbox prefix is neither handled nor answered."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import nats.errors
import orjson

from apex_contracts import ApexError, ErrorCode, InvalidInput, new_id
from apex_contracts.busapi import any_principal, inbox_prefix, parse_api_subject
from apex_contracts.envelope import Model
from apex_contracts.frames import ErrorFrame
from apex_runtime.port import Bus, Notice, Subscription
from apex_runtime.topology import TRANSIENT_NATS_ERRORS

log = logging.getLogger(__name__)

_SEND_FAILURES: tuple[type[BaseException], ...] = (*TRANSIENT_NATS_ERRORS, nats.errors.Error, TimeoutError)
# (tenant_id, user_id, request body) -> the answer: a frame, or a JSON object
ApiHandler = Callable[[str, str, bytes], Awaitable[Model | dict[str, Any]]]


def _answerable(notice: Notice) -> bool:
    """A request is handled only when its reply goes to the caller's own inbox prefix.
    The caller chooses the reply subject, and the responder publishes with its own,
    wider grants: a reply subject such as ``apex.cmd.run.start`` or another tenant's
    events would make the responder write there for the caller (a confused deputy)."""
    try:
        _, user_id, _ = parse_api_subject(notice.subject)
    except InvalidInput:
        log.warning("bus API: a request on %s was ignored: not a bus API subject", notice.subject)
        return False
    if not notice.reply.startswith(inbox_prefix(user_id) + "."):
        log.warning(
            "bus API: a request on %s was ignored: its reply subject is not the caller's inbox",
            notice.subject,
        )
        return False
    return True


def frame_request(data: bytes, frame_type: str) -> dict[str, Any]:
    """A request's JSON object with its ``type`` (optional on the bus: the subject names
    the operation); InvalidInput when it is not an object of that type."""
    try:
        raw = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput("The request is not valid JSON.", code=ErrorCode.INVALID_JSON) from exc
    if not isinstance(raw, dict):
        raise InvalidInput("A request is a JSON object.", code=ErrorCode.INVALID_FRAME)
    raw.setdefault("type", frame_type)
    if raw["type"] != frame_type:
        raise InvalidInput(f"This subject takes {frame_type!r} requests.", code=ErrorCode.INVALID_FRAME)
    return raw


class BusApiResponder:
    """Serves ``operation`` in queue group ``queue`` with ``handler``, at most
    ``max_in_flight`` requests at once per process (the rest wait in NATS' pending
    buffer, then the client's request times out)."""

    def __init__(
        self, bus: Bus, operation: str, queue: str, handler: ApiHandler, *, max_in_flight: int = 64
    ) -> None:
        self._bus = bus
        self._operation = operation
        self._queue = queue
        self._handler = handler
        self._slots = asyncio.Semaphore(max_in_flight)
        self._tasks: set[asyncio.Task[None]] = set()
        self._sub: Subscription | None = None

    async def start(self) -> None:
        self._sub = await self._bus.listen(
            any_principal(self._operation), self._on_request, queue=self._queue
        )

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.stop()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=10)

    async def _on_request(self, notice: Notice) -> None:
        if not _answerable(notice):
            return
        await self._slots.acquire()
        task = asyncio.create_task(self._answer(notice))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()

    async def _answer(self, notice: Notice) -> None:
        try:
            tenant_id, user_id, _ = parse_api_subject(notice.subject)  # checked: _answerable
            answer: Model | dict[str, Any] = await self._handler(tenant_id, user_id, notice.data)
        except ApexError as exc:
            details = exc.details or {}
            answer = ErrorFrame(
                code=exc.code.value,
                message=exc.message,
                retryable=exc.retryable,
                ref=details.get("ref") if isinstance(details.get("ref"), str) else None,
                retry_after_ms=details.get("retry_after_ms"),
            )
        except Exception:  # the boundary: a defect answers this request, the responder lives on
            incident = new_id("evt")
            log.exception("bus API %s failed (incident %s)", notice.subject, incident)
            answer = ErrorFrame(
                code=ErrorCode.INTERNAL_ERROR.value,
                message="Something went wrong on our side.",
                retryable=True,
                incident=incident,
            )
        body = (
            answer.model_dump_json(exclude_none=True).encode()
            if isinstance(answer, Model)
            else orjson.dumps(answer)
        )
        try:
            await self._bus.broadcast(notice.reply, body)
        except _SEND_FAILURES as exc:
            # the caller's request times out and it retries (message.send is idempotent)
            log.warning("bus API: the answer to %s was not sent: %r", notice.subject, exc)
