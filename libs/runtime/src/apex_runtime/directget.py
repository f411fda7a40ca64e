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

from apex_contracts import ErrorCode, Unavailable
from apex_runtime.natsclient import raw_subscription
from apex_runtime.port import Stored

# How long a read waits for a lagging replica to catch up with what the leader holds.
_CATCH_UP_S = 15.0
_END_OF_BATCH = frozenset({"204", "404"})
# A reader that never waits gives the loop a turn this often.
_YIELD_EVERY = 100
# How long a batch may go without a message before it counts as unanswered.
_SILENCE_S = 3.0


def _range(seq: int, subject: str, batch: int) -> dict[str, Any]:
    return {"seq": seq, "next_by_subj": subject, "batch": batch}


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
        ahead: asyncio.Task[list[Stored]] | None = None
        try:
            while True:
                if ahead is None:
                    chunk = await self._batch(stream, _range(start, subject, batch))
                else:
                    chunk, ahead = await ahead, None
                if len(chunk) == batch and not (upto_seq and chunk[-1].seq >= upto_seq):
                    # the next batch is asked for while this one is handed over
                    ahead = asyncio.ensure_future(
                        self._batch(stream, _range(chunk[-1].seq + 1, subject, batch))
                    )
                for n, stored in enumerate(chunk, 1):
                    if upto_seq and stored.seq > upto_seq:
                        return
                    last = stored.seq
                    yield stored
                    if n % _YIELD_EVERY == 0:  # the next batch's request goes out, other tasks run
                        await asyncio.sleep(0)
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
        finally:
            if ahead is not None:  # the reader stopped early: nobody reads the batch asked for
                ahead.cancel()
                await asyncio.wait([ahead])
                if not ahead.cancelled():
                    ahead.exception()  # its outcome, a failure included, concerns no reader

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
        async with raw_subscription(self._nc, inbox, reply.on_msg):
            await self._nc.publish(f"$JS.API.DIRECT.GET.{stream}", orjson.dumps(request), reply=inbox)
            return await reply.wait(_SILENCE_S)


class _BatchReply:
    """The messages of one batched direct get, gathered as the read loop reads them
    (``raw_subscription``): their headers are read for the two values a reader needs,
    never parsed whole. ``wait`` raises ``nats.errors.TimeoutError`` once nothing has
    arrived for ``silence_s``."""

    def __init__(self, stream: str) -> None:
        self._stream = stream
        self._loop = asyncio.get_running_loop()
        self._done: asyncio.Future[list[Stored]] = self._loop.create_future()
        self._out: list[Stored] = []
        self._heard = self._loop.time()

    def on_msg(self, data: bytes, headers: bytes | None) -> None:
        if self._done.done():
            return
        self._heard = self._loop.time()
        status = _status(headers)
        if status is None:
            stored = _stored(headers, data)
            if stored is not None:
                self._out.append(stored)
                return
            self._done.set_exception(
                Unavailable(
                    f"direct get on {self._stream} answered without a sequence and subject",
                    code=ErrorCode.BUS_UNAVAILABLE,
                )
            )
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


_STATUS_LINE = b"NATS/1.0 "


def _status(headers: bytes | None) -> str | None:
    """The status code of a header block (``NATS/1.0 404 No Messages``), None without one."""
    if headers is None or not headers.startswith(_STATUS_LINE):
        return None
    return headers[len(_STATUS_LINE) : len(_STATUS_LINE) + 3].decode("ascii", "replace")


def _header(headers: bytes, name: bytes) -> bytes | None:
    """The value of header ``name`` (its last line, as nats-py reads a repeated header)."""
    at = headers.rfind(b"\r\n" + name + b":")
    if at < 0:
        return None
    start = at + len(name) + 3
    end = headers.find(b"\r\n", start)
    return headers[start:end].strip() if end >= 0 else None


def _stored(headers: bytes | None, data: bytes) -> Stored | None:
    """The message a direct get answered with; None when its headers do not say where it
    is stored."""
    if headers is None:
        return None
    seq = _header(headers, b"Nats-Sequence")
    subject = _header(headers, b"Nats-Subject")
    if seq is None or not seq.isdigit() or not subject:
        return None
    return Stored(int(seq), subject.decode(errors="replace"), data)
