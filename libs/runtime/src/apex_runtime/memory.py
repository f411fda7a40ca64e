"""``MemoryBus``: the bus port in memory, for unit tests that want the service's own
handlers without a server. Streams keep seqs, subjects and a dedupe window as the
contracts' specs say; core subjects fan out (a stored message is heard by listeners of
its subject too, as NATS does); KV buckets keep revisions. What it does not have:
durable command consumers (FastStream's ``TestNatsBroker`` serves those in tests; a
``pull`` consumer here redelivers only what was nak'd, never on an ack timeout), replicas
and their lag, size limits and ages."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from apex_contracts import Envelope, ErrorCode, Unavailable, subjects, validate_id
from apex_contracts.streams import APEX_EVT, STREAMS, ConsumerSpec, StreamSpec
from apex_runtime.port import (
    Bus,
    ConsumerState,
    KvBucket,
    KvEntry,
    Notice,
    NoticeHandler,
    PullConsumer,
    Pulled,
    Stored,
    StoredHandler,
    StreamState,
    Subscription,
    WrongRevision,
    stream_holding,
    subject_matches,
)
from apex_runtime.topology import KV_BUCKETS

log = logging.getLogger(__name__)


@dataclass
class _Stream:
    spec: StreamSpec
    created_ms: int
    messages: dict[int, tuple[Stored, float]] = field(default_factory=dict)
    last: int = 0
    first: int = 0
    seen_ids: dict[str, tuple[int, float]] = field(default_factory=dict)

    def holds(self, subject: str) -> bool:
        return any(subject_matches(pattern, subject) for pattern in self.spec.subjects)

    def store(self, subject: str, data: bytes, msg_id: str | None) -> tuple[Stored, bool]:
        now = time.monotonic()
        if msg_id is not None:
            known = self.seen_ids.get(msg_id)
            if known is not None and now - known[1] < self.spec.duplicate_window_s:
                return Stored(known[0], subject, data), False
        self.last += 1
        stored = Stored(self.last, subject, data)
        self.messages[self.last] = (stored, time.time())
        if not self.first:
            self.first = self.last
        if msg_id is not None:
            self.seen_ids[msg_id] = (self.last, now)
        return stored, True

    def remove(self, seq: int) -> bool:
        if self.messages.pop(seq, None) is None:
            return False
        self.first = min(self.messages, default=self.last + 1)
        return True


class _MemoryPull(PullConsumer):
    """A durable pull consumer in memory: each message of its filter once, in order; a
    nak'd one again after its delay."""

    def __init__(self, stream: _Stream, spec: ConsumerSpec) -> None:
        self._stream = stream
        self._spec = spec
        self._next = 0
        self._again: list[tuple[float, Stored]] = []

    async def fetch(self, batch: int, *, timeout: float) -> list[Pulled]:
        give_up = time.monotonic() + timeout
        while True:
            taken = self._take(batch)
            if taken or time.monotonic() >= give_up:
                return [Pulled(s.seq, s.subject, s.data, _settled, self._nak_of(s)) for s in taken]
            await asyncio.sleep(min(0.01, timeout))

    def _take(self, batch: int) -> list[Stored]:
        now = time.monotonic()
        due = [s for at, s in self._again if at <= now][:batch]
        self._again = [(at, s) for at, s in self._again if s not in due]
        for seq in sorted(self._stream.messages):
            if len(due) >= batch:
                break
            stored = self._stream.messages[seq][0]
            if seq > self._next and subject_matches(self._spec.filter_subject, stored.subject):
                due.append(stored)
                self._next = seq
        return due

    def _nak_of(self, stored: Stored) -> Callable[[float], Awaitable[None]]:
        async def nak(delay: float) -> None:
            self._again.append((time.monotonic() + delay, stored))

        return nak

    async def stop(self) -> None:
        return None


async def _settled() -> None:
    return None


class _Pump(Subscription):
    """Hands queued items to a handler one at a time, in order, on its own task (as a
    NATS client's subscription callback runs)."""

    def __init__(self, handler: Callable[[Any], Awaitable[None]], on_stop: Callable[[_Pump], None]) -> None:
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._handler = handler
        self._on_stop = on_stop
        self._task = asyncio.create_task(self._run())

    def put(self, item: Any) -> None:
        self._queue.put_nowait(item)

    async def _run(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                await self._handler(item)
            except Exception:
                # as a NATS client does with a callback that raised: report it, deliver on
                log.exception("a subscription handler failed")

    async def stop(self) -> None:
        self._on_stop(self)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


@dataclass
class _Listener:
    pattern: str
    queue: str
    pump: _Pump


class MemoryKvBucket(KvBucket):
    def __init__(self) -> None:
        self._values: dict[str, KvEntry] = {}
        self._revisions: dict[str, int] = {}  # a deleted key keeps its tombstone's revision
        self._counter = itertools.count(1)

    def _write(self, key: str, value: bytes) -> int:
        revision = next(self._counter)
        self._values[key] = KvEntry(key, value, revision)
        self._revisions[key] = revision
        return revision

    async def get(self, key: str) -> KvEntry | None:
        return self._values.get(key)

    async def put(self, key: str, value: bytes) -> int:
        return self._write(key, value)

    async def create(self, key: str, value: bytes) -> int:
        if key in self._values:
            raise WrongRevision(key)
        return self._write(key, value)

    async def update(self, key: str, value: bytes, last: int) -> int:
        if self._revisions.get(key, 0) != last:
            raise WrongRevision(key)
        return self._write(key, value)

    async def delete(self, key: str, last: int | None = None) -> None:
        if last is not None and self._revisions.get(key, 0) != last:
            raise WrongRevision(key)
        self._values.pop(key, None)
        self._revisions[key] = next(self._counter)

    async def purge(self, key: str) -> None:
        self._values.pop(key, None)
        self._revisions[key] = next(self._counter)

    async def purge_matching(self, pattern: str) -> None:
        for key in [key for key in self._values if subject_matches(pattern, key)]:
            await self.purge(key)

    async def keys(self) -> list[str]:
        return list(self._values)

    async def entries(self, pattern: str = ">") -> list[KvEntry]:
        return [entry for key, entry in self._values.items() if subject_matches(pattern, key)]


class MemoryBus(Bus):
    """Every stream of apex_contracts.streams and every bucket exist from the start."""

    def __init__(self, streams: tuple[StreamSpec, ...] = STREAMS) -> None:
        created = int(time.time() * 1000)
        self._streams = {spec.name: _Stream(spec, created) for spec in streams}
        self._buckets = {name: MemoryKvBucket() for name in KV_BUCKETS}
        self._listeners: list[_Listener] = []
        self._pulls: dict[str, _MemoryPull] = {}
        self._followers: list[tuple[str, str, _Pump]] = []  # (stream, subject, pump)
        self._inboxes = itertools.count(1)
        self._rotation = itertools.count()
        self._closed = False

    @property
    def connected(self) -> bool:
        return not self._closed

    async def close(self) -> None:
        self._closed = True
        pumps = [listener.pump for listener in self._listeners] + [pump for *_, pump in self._followers]
        for pump in pumps:
            await pump.stop()

    async def ensure_topology(self, *, wait_s: float = 60.0) -> None:
        """Nothing to do: the topology exists from the start."""

    async def ensure_consumer(self, spec: ConsumerSpec) -> None:
        """Nothing to do: command consumers are FastStream's (``TestNatsBroker``)."""

    def _stream(self, name: str) -> _Stream:
        try:
            return self._streams[name]
        except KeyError:
            raise Unavailable(f"no stream {name}", code=ErrorCode.BUS_UNAVAILABLE) from None

    def _check_open(self) -> None:
        if self._closed:
            raise Unavailable("the bus is closed", code=ErrorCode.BUS_UNAVAILABLE)

    # --- publishing ----------------------------------------------------------------

    async def publish(self, message: Envelope, subject: str) -> int:
        return await self.publish_raw(subject, message.wire(), {"Nats-Msg-Id": message.id})

    async def publish_raw(self, subject: str, data: bytes, headers: Mapping[str, str] | None = None) -> int:
        self._check_open()
        stream = next((s for s in self._streams.values() if s.holds(subject)), None)
        if stream is None:
            raise Unavailable(f"no stream stores {subject}", code=ErrorCode.PUBLISH_FAILED)
        stored, new = stream.store(subject, data, (headers or {}).get("Nats-Msg-Id"))
        if new:
            for name, pattern, pump in self._followers:
                if name == stream.spec.name and subject_matches(pattern, subject):
                    pump.put(stored)
            self._fan_out(Notice(subject, data, "", dict(headers or {})))
        return stored.seq

    # --- reading the log -----------------------------------------------------------

    async def read_range(
        self,
        subject: str,
        *,
        after_seq: int = 0,
        batch: int = 1000,
        stream: str = APEX_EVT.name,
        through_seq: int = 0,
        upto_seq: int = 0,
    ) -> AsyncIterator[Stored]:
        held = self._stream(stream)
        last = after_seq
        for seq in sorted(s for s in held.messages if s > after_seq and (not upto_seq or s <= upto_seq)):
            stored = held.messages.get(seq)
            if stored is not None and subject_matches(subject, stored[0].subject):
                last = seq
                yield stored[0]
        if last < through_seq:
            raise Unavailable(
                f"{stream} holds no seq {through_seq} of {subject}", code=ErrorCode.BUS_UNAVAILABLE
            )

    async def follow(
        self, subject: str, handler: StoredHandler, *, after_seq: int | None = None
    ) -> Subscription:
        held = self._stream(self._stream_of(subject))
        pump = _Pump(handler, self._forget_follower)
        if after_seq is not None:
            async for stored in self.read_range(subject, after_seq=after_seq, stream=held.spec.name):
                pump.put(stored)
        self._followers.append((held.spec.name, subject, pump))
        return pump

    def _forget_follower(self, pump: _Pump) -> None:
        self._followers = [f for f in self._followers if f[2] is not pump]

    def _stream_of(self, subject: str) -> str:
        name = stream_holding((stream.spec for stream in self._streams.values()), subject)
        if name is None:
            raise Unavailable(f"no stream stores {subject}", code=ErrorCode.BUS_UNAVAILABLE)
        return name

    async def last_seq(self, subject: str, stream: str = APEX_EVT.name, *, leader: bool = False) -> int:
        held = self._stream(stream)
        return max(
            (seq for seq, (stored, _at) in held.messages.items() if subject_matches(subject, stored.subject)),
            default=0,
        )

    async def first_seq(self, stream: str = APEX_EVT.name) -> int:
        return self._stream(stream).first

    async def head_seq(self, stream: str = APEX_EVT.name) -> int:
        return self._stream(stream).last

    async def seq_before(self, moment: datetime, subject: str, stream: str = APEX_EVT.name) -> int:
        held = self._stream(stream)
        cutoff = moment.timestamp()
        for seq in sorted(held.messages):
            stored, at = held.messages[seq]
            if at >= cutoff and subject_matches(subject, stored.subject):
                return seq - 1
        return held.last

    async def stream_epoch(self, stream: str = APEX_EVT.name) -> str:
        return f"{stream}@{self._stream(stream).created_ms}"

    async def owner_of_thread(self, thread_id: str) -> tuple[str, str] | None:
        pattern = f"{subjects.EVT_PREFIX}.*.*.{validate_id(thread_id, 'thr')}"
        async for stored in self.read_range(pattern):
            tenant, user, _thread = subjects.parse_thread_subject(stored.subject)
            return tenant, user
        return None

    async def stream_state(self, stream: str) -> StreamState:
        held = self._stream(stream)
        return StreamState(
            name=stream,
            messages=len(held.messages),
            bytes=sum(len(stored.data) for stored, _at in held.messages.values()),
            first_seq=held.first,
            last_seq=held.last,
            consumers=0,
        )

    async def consumer_state(self, stream: str, durable: str) -> ConsumerState | None:
        return None  # no durable consumers in memory

    async def pull(self, spec: ConsumerSpec) -> PullConsumer:
        consumer = self._pulls.get(spec.durable)
        if consumer is None:
            consumer = self._pulls[spec.durable] = _MemoryPull(self._stream(spec.stream), spec)
        return consumer

    async def purge(self, stream: str, subject: str, *, keep_after: int = 0) -> None:
        held = self._stream(stream)
        for seq, (stored, _at) in list(held.messages.items()):
            if subject_matches(subject, stored.subject) and (not keep_after or seq <= keep_after):
                held.remove(seq)

    async def delete_message(self, stream: str, seq: int) -> bool:
        return self._stream(stream).remove(seq)

    # --- core subjects -------------------------------------------------------------

    def _fan_out(self, notice: Notice) -> int:
        heard = 0
        groups: dict[str, list[_Listener]] = {}
        for listener in list(self._listeners):
            if not subject_matches(listener.pattern, notice.subject):
                continue
            if listener.queue:
                groups.setdefault(listener.queue, []).append(listener)
            else:
                listener.pump.put(notice)
                heard += 1
        for members in groups.values():
            members[next(self._rotation) % len(members)].pump.put(notice)
            heard += 1
        return heard

    async def broadcast(self, subject: str, data: bytes, *, reply: str = "") -> None:
        self._check_open()
        self._fan_out(Notice(subject, data, reply))

    async def listen(self, subject: str, handler: NoticeHandler, *, queue: str = "") -> Subscription:
        pump = _Pump(handler, self._forget_listener)
        self._listeners.append(_Listener(subject, queue, pump))
        return pump

    def _forget_listener(self, pump: _Pump) -> None:
        self._listeners = [listener for listener in self._listeners if listener.pump is not pump]

    def new_inbox(self) -> str:
        return f"_INBOX.memory.{next(self._inboxes)}"

    async def request(self, subject: str, data: bytes, *, timeout: float = 5.0) -> bytes:
        self._check_open()
        answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        async def on_reply(notice: Notice) -> None:
            if not answer.done():
                answer.set_result(notice.data)

        inbox = self.new_inbox()
        sub = await self.listen(inbox, on_reply)
        try:
            if not self._fan_out(Notice(subject, data, inbox)):
                raise Unavailable(f"nobody serves {subject}", code=ErrorCode.SERVICE_UNAVAILABLE)
            try:
                return await asyncio.wait_for(answer, timeout)
            except TimeoutError as exc:
                raise Unavailable(f"{subject} did not answer in time") from exc
        finally:
            await sub.stop()

    # --- buckets -------------------------------------------------------------------

    async def bucket(self, name: str) -> KvBucket:
        try:
            return self._buckets[name]
        except KeyError:
            raise Unavailable(f"no bucket {name}", code=ErrorCode.BUS_UNAVAILABLE) from None
