"""Reading a range of a stream with JetStream's batched direct get: the one place in the
tree that reads a range of the log (``NatsBus.read_range`` is built on it). No consumer
is created; any replica that allows direct gets answers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import nats.errors
import orjson
import stamina
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from apex_contracts import ErrorCode, Unavailable
from apex_runtime.port import Stored

# How long a read waits for a lagging replica to catch up with what the leader holds.
_CATCH_UP_S = 15.0
_END_OF_BATCH = frozenset({"204", "404"})
# How long a batch may go without a message before it counts as unanswered.
_SILENCE_S = 3.0


class _NoAnswer(Exception):
    """A direct get nobody answered (503: no replica responds right now)."""


class DirectGet:
    """Batched direct gets on one connection. ``retry_s()`` is how long a request nobody
    answers (it went to a node that just died) is asked again."""

    def __init__(self, nc: NATS, *, retry_s: Callable[[], float]) -> None:
        self._nc = nc
        self._retry_s = retry_s

    async def read(
        self,
        stream: str,
        subject: str,
        *,
        after_seq: int = 0,
        batch: int = 1000,
        through_seq: int = 0,
        upto_seq: int = 0,
    ) -> AsyncIterator[Stored]:
        """Yields every message on ``subject`` with ``after_seq`` < seq (<= ``upto_seq``
        when given), in order. In a cluster a follower can be behind the leader
        (milliseconds; seconds while a lost leader is replaced): with ``through_seq`` the
        read goes on until it has reached it, asking again while the answering replica
        catches up, for up to ``_CATCH_UP_S``; then Unavailable rather than end short."""
        start = after_seq + 1
        last = after_seq
        loop = asyncio.get_running_loop()
        give_up = loop.time() + _CATCH_UP_S
        while True:
            chunk = await self._batch(stream, {"seq": start, "next_by_subj": subject, "batch": batch})
            for stored in chunk:
                if upto_seq and stored.seq > upto_seq:
                    return
                last = stored.seq
                yield stored
            if len(chunk) == batch:
                start = chunk[-1].seq + 1
                continue
            if last >= through_seq:
                return
            if loop.time() > give_up:
                raise Unavailable(
                    f"{stream} replicas did not reach seq {through_seq} of {subject} in {_CATCH_UP_S:.0f} s",
                    code=ErrorCode.BUS_UNAVAILABLE,
                )
            start = last + 1
            await asyncio.sleep(0.05)

    async def first(self, stream: str, request: dict[str, Any]) -> Stored | None:
        """The one message a direct get ``request`` (without ``batch``) finds; None when none."""
        found = await self._batch(stream, {**request, "batch": 1})
        return found[0] if found else None

    async def _batch(self, stream: str, request: dict[str, Any]) -> list[Stored]:
        try:  # the first attempt without the retry machinery (tens of µs per call)
            return await self._batch_once(stream, request)
        except (nats.errors.TimeoutError, _NoAnswer):
            return await self._batch_again(stream, request)

    async def _batch_again(self, stream: str, request: dict[str, Any]) -> list[Stored]:
        try:
            async for attempt in stamina.retry_context(
                on=(nats.errors.TimeoutError, _NoAnswer),
                attempts=None,
                timeout=self._retry_s(),
                wait_initial=0.1,
                wait_max=0.1,
                wait_jitter=0.0,
            ):
                with attempt:
                    return await self._batch_once(stream, request)
        except (nats.errors.TimeoutError, _NoAnswer) as exc:
            raise Unavailable(
                f"direct get on {stream} was not answered: {exc!r}", code=ErrorCode.BUS_UNAVAILABLE
            ) from exc
        raise AssertionError("unreachable: stamina either returns or raises")

    async def _batch_once(self, stream: str, request: dict[str, Any]) -> list[Stored]:
        inbox = self._nc.new_inbox()
        reply = _BatchReply(stream)
        sub = await self._nc.subscribe(inbox, cb=reply.on_msg, max_msgs=int(request["batch"]) + 1)
        try:
            await self._nc.publish(f"$JS.API.DIRECT.GET.{stream}", orjson.dumps(request), reply=inbox)
            return await reply.wait(_SILENCE_S)
        finally:
            await sub.unsubscribe()


class _BatchReply:
    """The messages of one batched direct get, gathered by the subscription's callback: a
    ``next_msg`` per message would cost two tasks each. ``wait`` raises
    ``nats.errors.TimeoutError`` once nothing has arrived for ``silence_s``."""

    def __init__(self, stream: str) -> None:
        self._stream = stream
        self._loop = asyncio.get_running_loop()
        self._done: asyncio.Future[list[Stored]] = self._loop.create_future()
        self._out: list[Stored] = []
        self._heard = self._loop.time()

    async def on_msg(self, msg: Msg) -> None:
        if self._done.done():
            return
        self._heard = self._loop.time()
        headers = msg.headers or {}
        status = headers.get("Status")
        if status is None:
            self._out.append(Stored(int(headers["Nats-Sequence"]), headers["Nats-Subject"], msg.data))
        elif status in _END_OF_BATCH:
            self._done.set_result(self._out)
        elif status == "503":  # no responders (yet)
            self._done.set_exception(_NoAnswer(status))
        else:
            self._done.set_exception(
                Unavailable(
                    f"direct get on {self._stream} failed with status {status}",
                    code=ErrorCode.BUS_UNAVAILABLE,
                )
            )

    async def wait(self, silence_s: float) -> list[Stored]:
        while True:
            remaining = self._heard + silence_s - self._loop.time()
            if remaining <= 0:
                raise nats.errors.TimeoutError
            try:
                async with asyncio.timeout(remaining):
                    return await asyncio.shield(self._done)
            except TimeoutError:
                continue
