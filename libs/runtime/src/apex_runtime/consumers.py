"""Command consumers on FastStream: durable pull subscriptions with manual acks, bounded
concurrency and a poison guard.

A handler acks its message itself when the work is done. When it raises, the guard
decides: input that can never be valid, or a message that has failed on its last
allowed delivery, goes to the dead-letter subject and its owner is told (``on_poison``,
e.g. the orchestrator fails the run with ``run.failed``); anything else is negatively
acknowledged with a backoff so it is tried again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any

import nats.errors
from faststream import BaseMiddleware
from faststream.middlewares import AckPolicy
from faststream.nats import ConsumerConfig, JStream, NatsRouter, PullSub
from nats.aio.msg import Msg
from pydantic import ValidationError

from apex_contracts import ApexError, ErrorCode, ErrorInfo, subjects
from apex_contracts.streams import ConsumerSpec

log = logging.getLogger(__name__)
PoisonHandler = Callable[[bytes, ErrorInfo], Awaitable[None]]
_RETRY_BACKOFF_S = (0.2, 1.0, 3.0, 10.0)


def subscribe_command(
    router: NatsRouter,
    spec: ConsumerSpec,
    *,
    max_workers: int,
    title: str,
    description: str,
) -> Callable[[Callable[..., Awaitable[Any]]], Any]:
    """Decorates a handler as the one consumer of a command subject."""
    return router.subscriber(  # type: ignore[no-any-return]
        spec.filter_subject,
        stream=JStream(spec.stream, declare=False),
        durable=spec.durable,
        pull_sub=PullSub(batch_size=max(1, min(max_workers, 50)), timeout=1.0),
        config=ConsumerConfig(
            ack_wait=spec.ack_wait_s,
            max_deliver=spec.max_deliver,
            max_ack_pending=spec.max_ack_pending,
        ),
        ack_policy=AckPolicy.MANUAL,
        max_workers=max_workers,
        title=title,
        description=description,
    )


def poison_guard(
    publish_raw: Callable[[str, bytes, dict[str, str]], Awaitable[None]],
    on_poison: PoisonHandler,
    consumers: Iterable[ConsumerSpec],
) -> Callable[..., BaseMiddleware]:
    """A middleware factory for the command consumers named; ``publish_raw(subject, data,
    headers)`` stores a dead letter. Messages on other subjects pass through untouched."""
    max_deliver = {spec.filter_subject: spec.max_deliver for spec in consumers}
    return functools.partial(
        _PoisonGuard, publish_raw=publish_raw, on_poison=on_poison, max_deliver=max_deliver
    )


class _PoisonGuard(BaseMiddleware):
    def __init__(
        self,
        msg: Any,
        /,
        *,
        context: Any,
        publish_raw: Callable[[str, bytes, dict[str, str]], Awaitable[None]],
        on_poison: PoisonHandler,
        max_deliver: Mapping[str, int],
    ) -> None:
        super().__init__(msg, context=context)
        self._publish_raw = publish_raw
        self._on_poison = on_poison
        self._max_deliver = max_deliver

    async def consume_scope(self, call_next: Any, msg: Any) -> Any:
        raw: Msg = msg.raw_message
        if raw.subject not in self._max_deliver:
            return await call_next(msg)
        try:
            return await call_next(msg)
        except ValidationError as exc:
            await self._dead_letter(raw, ErrorInfo(
                code=ErrorCode.INVALID_REQUEST, message=f"invalid command: {exc}", retryable=False
            ))
        except ApexError as exc:
            if exc.retryable and not self._last_delivery(raw):
                await self._retry(raw, exc)
            else:
                await self._dead_letter(raw, exc.info())
        except Exception as exc:  # noqa: BLE001 - the guard re-queues or dead-letters; never swallows
            if self._last_delivery(raw):
                await self._dead_letter(raw, ErrorInfo(
                    code=ErrorCode.POISON_COMMAND,
                    message=f"failed on every delivery: {exc!r}",
                    retryable=False,
                ))
            else:
                await self._retry(raw, exc)
        return None

    def _last_delivery(self, raw: Msg) -> bool:
        limit = self._max_deliver[raw.subject]
        return limit > 0 and raw.metadata.num_delivered >= limit

    async def _retry(self, raw: Msg, exc: BaseException) -> None:
        attempt = raw.metadata.num_delivered
        delay = _RETRY_BACKOFF_S[min(attempt - 1, len(_RETRY_BACKOFF_S) - 1)]
        log.warning(
            "%s failed on delivery %d, retrying in %.1fs: %r", raw.subject, attempt, delay, exc,
            exc_info=not isinstance(exc, ApexError),
        )
        await raw.nak(delay=delay)

    async def _dead_letter(self, raw: Msg, error: ErrorInfo) -> None:
        log.error("dead-lettering %s after %d deliveries: %s", raw.subject,
                  raw.metadata.num_delivered, error.message)
        headers = {
            "Apex-Error-Code": error.code,
            "Apex-Error-Message": error.message[:500],
            "Apex-Original-Subject": raw.subject,
            "Apex-Deliveries": str(raw.metadata.num_delivered),
        }
        try:
            await self._publish_raw(subjects.dead_letter(raw.subject), raw.data, headers)
            await self._on_poison(raw.data, error)
        except (ApexError, nats.errors.Error) as exc:
            log.error("could not dead-letter %s, leaving it for redelivery: %r", raw.subject, exc)
            await raw.nak(delay=5.0)
            return
        await raw.term()


@contextlib.asynccontextmanager
async def keep_alive(progress: Callable[[], Awaitable[None]], every_s: float) -> AsyncIterator[None]:
    """While the block runs, tells JetStream every ``every_s`` that the message is still
    being worked on (an in-progress ack), so it is not redelivered to someone else."""

    async def beat() -> None:
        while True:
            await asyncio.sleep(every_s)
            await progress()

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
