"""Command consumers on FastStream: durable pull subscriptions with manual acks, bounded
concurrency, a poison guard, in-progress heartbeats and interruptible work.

A handler acks its message itself when the work is done. When it raises, the guard
decides: input that can never be valid, or a message that has failed on its last
allowed delivery, goes to the dead-letter subject and its owner is told (``on_poison``,
e.g. the orchestrator fails the run with ``run.failed``); anything else is negatively
acknowledged with a backoff so it is tried again. A message delivered more often than
allowed (its workers died on every delivery, so no handler ever raised) is dead-lettered
before it can kill another one.

``RunCancellations`` holds the work a process is doing per run; the control broadcast
``apex.ctl.cancel.<run>`` (sent when a run is cancelled or ends) interrupts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Mapping
from typing import Any, TypeVar

import nats.errors
from faststream import BaseMiddleware
from faststream.middlewares import AckPolicy
from faststream.nats import ConsumerConfig, JStream, NatsRouter, PullSub
from nats.aio.msg import Msg
from pydantic import ValidationError

from apex_contracts import ApexError, Cancelled, ErrorCode, ErrorInfo, subjects
from apex_contracts.dedupe_ids import dead_letter_id
from apex_contracts.errors import InvalidId
from apex_contracts.ids import validate_id
from apex_contracts.streams import ConsumerSpec
from apex_runtime.periodic import periodically
from apex_runtime.port import Bus, Notice, Subscription, subject_matches

log = logging.getLogger(__name__)
T = TypeVar("T")
PoisonHandler = Callable[[bytes, ErrorInfo], Awaitable[None]]
DEFAULT_BACKOFF_S = (0.2, 1.0, 3.0, 10.0)
# What a broken connection raises while a message is being settled or heartbeated.
_SETTLE_FAILURES: tuple[type[BaseException], ...] = (nats.errors.Error, OSError, TimeoutError)
# What dead-lettering may raise: a refused publish or callback, or a broken connection (a
# named tuple because mypy cannot type an unpacking inside ``except (...)``).
_DEAD_LETTER_FAILURES: tuple[type[BaseException], ...] = (ApexError, *_SETTLE_FAILURES)


def subscribe_command(
    router: NatsRouter,
    spec: ConsumerSpec,
    *,
    max_workers: int,
    title: str,
    description: str,
    decoder: Callable[..., Awaitable[Any]] | None = None,
) -> Callable[[Callable[..., Awaitable[Any]]], Any]:
    """Decorates a handler as the one consumer of a command subject (``decoder``:
    FastStream's own unless given, e.g. ``undecoded`` for a handler that reads the body).

    JetStream itself redelivers without limit: the poison guard counts deliveries and
    dead-letters at ``spec.max_deliver``, so a message is never left stranded in the
    work queue with nobody to tell (which a JetStream ``max_deliver`` would do silently).
    Messages are fetched one at a time: a replica never holds commands it has no free
    worker for (they would wait unheartbeated while other replicas idle).
    """
    return router.subscriber(
        spec.filter_subject,
        stream=JStream(spec.stream, declare=False),
        durable=spec.durable,
        pull_sub=PullSub(batch_size=1, timeout=1.0),
        config=ConsumerConfig(
            ack_wait=spec.ack_wait_s,
            max_deliver=-1,
            max_ack_pending=spec.max_ack_pending,
        ),
        ack_policy=AckPolicy.MANUAL,
        max_workers=max_workers,
        title=title,
        description=description,
        decoder=decoder,
    )


def heartbeat_every(spec: ConsumerSpec) -> float:
    """How often a long handler of ``spec`` sends in-progress acks."""
    return max(0.5, spec.ack_wait_s / 5)


def poison_guard(
    publish_raw: Callable[[str, bytes, dict[str, str]], Awaitable[object]],
    on_poison: PoisonHandler,
    consumers: Iterable[ConsumerSpec],
    *,
    backoff_s: tuple[float, ...] | None = None,
) -> Callable[..., BaseMiddleware]:
    """A middleware factory for the command consumers named; ``publish_raw(subject, data,
    headers)`` stores a dead letter. Messages on other subjects pass through untouched.
    ``backoff_s`` overrides every consumer's own retry schedule (tests, operators)."""
    specs = {spec.filter_subject: spec for spec in consumers}
    return functools.partial(
        _PoisonGuard, publish_raw=publish_raw, on_poison=on_poison, specs=specs, backoff_s=backoff_s
    )


class _PoisonGuard(BaseMiddleware):
    def __init__(
        self,
        msg: Any,
        /,
        *,
        context: Any,
        publish_raw: Callable[[str, bytes, dict[str, str]], Awaitable[object]],
        on_poison: PoisonHandler,
        specs: Mapping[str, ConsumerSpec],
        backoff_s: tuple[float, ...] | None,
    ) -> None:
        super().__init__(msg, context=context)
        self._publish_raw = publish_raw
        self._on_poison = on_poison
        self._specs = specs
        self._backoff_s = backoff_s

    async def consume_scope(self, call_next: Any, msg: Any) -> Any:
        raw: Msg = msg.raw_message
        spec = self._specs.get(raw.subject) or next(
            (spec for pattern, spec in self._specs.items() if subject_matches(pattern, raw.subject)), None
        )
        if spec is None:
            return await call_next(msg)
        if 0 < spec.max_deliver < raw.metadata.num_delivered:
            await self._dead_letter(
                raw,
                ErrorInfo(
                    code=ErrorCode.POISON_COMMAND,
                    message=f"its worker stopped without an answer on {spec.max_deliver} deliveries",
                    retryable=False,
                ),
            )
            return None
        try:
            return await call_next(msg)
        except ValidationError as exc:
            await self._dead_letter(
                raw,
                ErrorInfo(code=ErrorCode.INVALID_REQUEST, message=f"invalid command: {exc}", retryable=False),
            )
        except ApexError as exc:
            if exc.retryable and not self._last_delivery(raw, spec):
                await self._retry(raw, spec, exc)
            else:
                await self._dead_letter(raw, exc.info())
        except Exception as exc:  # noqa: BLE001 - the guard re-queues or dead-letters; never swallows
            if self._last_delivery(raw, spec):
                await self._dead_letter(
                    raw,
                    ErrorInfo(
                        code=ErrorCode.POISON_COMMAND,
                        message=f"failed on every delivery: {exc!r}",
                        retryable=False,
                    ),
                )
            else:
                await self._retry(raw, spec, exc)
        return None

    @staticmethod
    def _last_delivery(raw: Msg, spec: ConsumerSpec) -> bool:
        return spec.max_deliver > 0 and raw.metadata.num_delivered >= spec.max_deliver

    async def _retry(self, raw: Msg, spec: ConsumerSpec, exc: BaseException) -> None:
        attempt = raw.metadata.num_delivered
        schedule = self._backoff_s or spec.backoff_s or DEFAULT_BACKOFF_S
        delay = schedule[min(attempt - 1, len(schedule) - 1)]
        log.warning(
            "%s failed on delivery %d, retrying in %.1fs: %r",
            raw.subject,
            attempt,
            delay,
            exc,
            exc_info=not isinstance(exc, ApexError),
        )
        try:
            await raw.nak(delay=delay)
        except _SETTLE_FAILURES as nak_failed:
            # the bus is down: JetStream redelivers after the ack wait anyway
            log.warning("could not nak %s (%r); it comes back after the ack wait", raw.subject, nak_failed)

    async def _dead_letter(self, raw: Msg, error: ErrorInfo) -> None:
        log.error(
            "dead-lettering %s after %d deliveries: %s",
            raw.subject,
            raw.metadata.num_delivered,
            error.message,
        )
        headers = {
            # one dead letter per command, however often dead-lettering is retried
            "Nats-Msg-Id": dead_letter_id(raw.metadata.stream, raw.metadata.sequence.stream),
            "Apex-Error-Code": error.code,
            "Apex-Error-Message": error.message[:500],
            "Apex-Original-Subject": raw.subject,
            "Apex-Deliveries": str(raw.metadata.num_delivered),
        }
        try:
            await self._publish_raw(subjects.dead_letter(raw.subject), raw.data, headers)
            await self._on_poison(raw.data, error)
            await raw.term()
        except _DEAD_LETTER_FAILURES as exc:
            # both steps are idempotent (the dead letter and the run's ending carry stable
            # ids), so the next delivery simply tries them again
            log.error("could not dead-letter %s, leaving it for redelivery: %r", raw.subject, exc)
            with contextlib.suppress(*_SETTLE_FAILURES):
                await raw.nak(delay=5.0)


@contextlib.asynccontextmanager
async def keep_alive(progress: Callable[[], Awaitable[None]], every_s: float) -> AsyncIterator[None]:
    """While the block runs, tells JetStream every ``every_s`` that the message is still
    being worked on (an in-progress ack), so it is not redelivered to someone else. A
    heartbeat lost to a reconnect is skipped, not fatal: the next one follows."""

    async def beat() -> None:
        try:
            await progress()
        except _SETTLE_FAILURES as exc:
            log.debug("in-progress ack not sent: %r", exc)

    async with periodically(every_s, beat, name="keep-alive"):
        yield


class RunCancellations:
    """The work this process is doing for each run, so that it can be interrupted.

    ``run(run_id, work)`` runs ``work`` and raises ``Cancelled`` (``run_cancelled``) if
    the run is cancelled meanwhile; a run cancelled in the last ``remember_s`` refuses new
    work at once (the broadcast can overtake the command). ``cancel`` is called by the
    control broadcast (``listen``) or by whoever learns that the run ended.
    """

    def __init__(self, *, remember_s: float = 600.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._remember_s = remember_s
        self._clock = clock
        self._tasks: dict[str, set[asyncio.Future[Any]]] = {}
        self._cancelled: dict[str, float] = {}
        self.interrupted = 0

    def is_cancelled(self, run_id: str) -> bool:
        at = self._cancelled.get(run_id)
        return at is not None and self._clock() - at < self._remember_s

    @property
    def in_flight(self) -> int:
        return sum(len(tasks) for tasks in self._tasks.values())

    def cancel(self, run_id: str) -> int:
        """Interrupts every piece of work of ``run_id``; returns how many were running."""
        self._forget_old()
        self._cancelled[run_id] = self._clock()
        tasks = [task for task in self._tasks.get(run_id, ()) if not task.done()]
        for task in tasks:
            task.cancel()
        return len(tasks)

    async def run(self, run_id: str, work: Coroutine[Any, Any, T]) -> T:
        if self.is_cancelled(run_id):
            work.close()
            raise Cancelled(f"Run {run_id} was cancelled.")
        task = asyncio.ensure_future(work)
        self._tasks.setdefault(run_id, set()).add(task)
        try:
            return await task
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if task.cancelled() and self.is_cancelled(run_id) and (me is None or me.cancelling() == 0):
                self.interrupted += 1
                raise Cancelled(f"Run {run_id} was cancelled.") from None
            raise
        finally:
            running = self._tasks.get(run_id)
            if running is not None:
                running.discard(task)
                if not running:
                    del self._tasks[run_id]

    async def listen(self, bus: Bus) -> Subscription:
        """Subscribes to ``apex.ctl.cancel.*`` (every replica hears every broadcast)."""

        async def on_cancel(notice: Notice) -> None:
            try:
                run_id = validate_id(notice.subject.rsplit(".", 1)[-1], "run")
            except InvalidId:
                return
            if self.cancel(run_id):
                log.info("interrupted the work of run %s", run_id)

        return await bus.listen(subjects.CTL_CANCEL_ALL, on_cancel)

    def _forget_old(self) -> None:
        if len(self._cancelled) < 1024:
            return
        horizon = self._clock() - self._remember_s
        self._cancelled = {run: at for run, at in self._cancelled.items() if at >= horizon}
