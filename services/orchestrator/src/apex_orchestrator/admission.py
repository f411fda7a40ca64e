"""Per-user concurrency: how many runs of one user may run at once, and what a message
sent while they run does (the double-texting policy).

The user's runs are one record in the key-value bucket ``apex_user_runs`` (key
``<tenant>.<user>``): the runs admitted (running) and the runs queued, in order. Every
change is a compare-and-set on the record's revision, so two orchestrator replicas
deciding at once cannot both take the last slot. The record is a coordination aid, not
a fact: the log says which runs ended, and an entry whose run ended without releasing
its slot (its driver died in between) is dropped by whoever finds it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

import nats.errors
import nats.js.errors

from apex_contracts import ErrorCode, Unavailable
from apex_contracts.envelope import Model
from apex_runtime import CircuitBreaker, KvBucket, WrongRevision

T = TypeVar("T")


class DoubleTexting(StrEnum):
    """What a run does when its user already has the maximum number of runs going."""

    ENQUEUE = "enqueue"  # wait for a free slot, in order (run.queued)
    REJECT = "reject"  # end at once with run.failed concurrency_limit
    INTERRUPT = "interrupt"  # cancel the user's earlier runs, then start (run.queued policy interrupt)


class Slot(Model):
    run_id: str
    thread_id: str


class UserRuns(Model):
    active: tuple[Slot, ...] = ()
    queued: tuple[Slot, ...] = ()

    def holds(self, run_id: str) -> bool:
        return any(s.run_id == run_id for s in (*self.active, *self.queued))

    def without(self, run_ids: set[str]) -> UserRuns:
        return UserRuns(
            active=tuple(s for s in self.active if s.run_id not in run_ids),
            queued=tuple(s for s in self.queued if s.run_id not in run_ids),
        )


@dataclass(frozen=True)
class Admitted:
    pass


@dataclass(frozen=True)
class Queued:
    """Waiting behind ``ahead``; under ``interrupt`` the ones to cancel are ``victims``."""

    ahead: tuple[Slot, ...]
    policy: DoubleTexting
    victims: tuple[Slot, ...] = ()


@dataclass(frozen=True)
class Rejected:
    running: tuple[Slot, ...]


Decision = Admitted | Queued | Rejected


def decide(record: UserRuns, slot: Slot, limit: int, policy: DoubleTexting) -> tuple[UserRuns, Decision]:
    """The record after ``slot`` asks to run, and the answer. Pure; idempotent for a run
    that already holds a place (a redelivered command gets the same answer)."""
    if any(s.run_id == slot.run_id for s in record.active):
        return record, Admitted()
    position = next((i for i, s in enumerate(record.queued) if s.run_id == slot.run_id), None)
    if position is not None:
        ahead = (*record.active, *record.queued[:position])
        victims = ahead if policy is DoubleTexting.INTERRUPT else ()
        return record, Queued(ahead, policy, victims)
    if len(record.active) < limit and not record.queued:
        return UserRuns(active=(*record.active, slot), queued=record.queued), Admitted()
    ahead = (*record.active, *record.queued)
    if policy is DoubleTexting.REJECT:
        return record, Rejected(record.active)
    victims = ahead if policy is DoubleTexting.INTERRUPT else ()
    return UserRuns(active=record.active, queued=(*record.queued, slot)), Queued(ahead, policy, victims)


def promote(record: UserRuns, run_id: str, limit: int) -> tuple[UserRuns, bool]:
    """Moves ``run_id`` from the head of the queue to the running ones when a slot is
    free. Returns the new record and whether the run may start."""
    if any(s.run_id == run_id for s in record.active):
        return record, True
    if not record.queued or record.queued[0].run_id != run_id or len(record.active) >= limit:
        return record, False
    return UserRuns(active=(*record.active, record.queued[0]), queued=record.queued[1:]), True


def release(record: UserRuns, run_id: str) -> tuple[UserRuns, None]:
    return record.without({run_id}), None


RunEnded = Callable[[Slot], Awaitable[bool]]
_KV_FAILURES: tuple[type[BaseException], ...] = (
    nats.errors.Error,
    nats.js.errors.Error,
    OSError,
    TimeoutError,
)


class UserSlots:
    """The record of each user's runs, changed only by compare-and-set.

    A change starts from the record and revision this replica last read or wrote for the
    user, when it has them (the run it admitted is usually the one it releases): the
    compare-and-set proves that record current, so no read is needed; when it is refused,
    the change is made again on a fresh read. "Nothing to change" is only believed from a
    fresh read."""

    KNOWN_MAX = 4096  # users whose last record this replica keeps

    def __init__(self, kv: KvBucket, breaker: CircuitBreaker, *, attempts: int = 20) -> None:
        self._kv = kv
        self._breaker = breaker
        self._attempts = attempts
        self._known: dict[str, tuple[UserRuns, int]] = {}

    @staticmethod
    def key(tenant_id: str, user_id: str) -> str:
        return f"{tenant_id}.{user_id}"

    async def claim(self, key: str, slot: Slot, limit: int, policy: DoubleTexting) -> Decision:
        """Asks for a slot for ``slot``'s run: admitted, queued or rejected."""
        return await self._change(key, lambda record: decide(record, slot, limit, policy))

    async def promote(self, key: str, run_id: str, limit: int) -> bool:
        """True when the queued run may start now (and it is then counted as running)."""
        return await self._change(key, lambda record: promote(record, run_id, limit))

    async def release(self, key: str, run_id: str) -> None:
        """Frees the run's slot or queue place; a run that holds none changes nothing."""
        await self._change(key, lambda record: release(record, run_id))

    async def forget_ended(self, key: str, ended: RunEnded, keep: str) -> int:
        """Drops the entries (other than ``keep``) whose runs have ended in the log;
        returns how many. For slots whose driver died between the end and the release."""
        record, _revision = await self._read(key)
        gone = {s.run_id for s in (*record.active, *record.queued) if s.run_id != keep and await ended(s)}
        if gone:
            await self._change(key, lambda current: (current.without(gone), None))
        return len(gone)

    async def _change(self, key: str, change: Callable[[UserRuns], tuple[UserRuns, T]]) -> T:
        if (known := self._known.pop(key, None)) is not None:
            updated, answer = change(known[0])
            if updated != known[0] and await self._write(key, updated, known[1]):
                return answer
        for _attempt in range(self._attempts):
            record, revision = await self._read(key)
            updated, answer = change(record)
            if updated == record:
                return answer
            if await self._write(key, updated, revision):
                return answer
        raise Unavailable(
            "The user's run record kept changing under us; try again.", code=ErrorCode.SERVICE_UNAVAILABLE
        )

    async def _read(self, key: str) -> tuple[UserRuns, int | None]:
        entry = await self._guarded(lambda: self._kv.get(key))
        if entry is None or not entry.value:
            return UserRuns(), (entry.revision if entry is not None else None)
        record = UserRuns.model_validate_json(entry.value)
        self._remember(key, record, entry.revision)
        return record, entry.revision

    def _remember(self, key: str, record: UserRuns, revision: int) -> None:
        self._known.pop(key, None)
        self._known[key] = (record, revision)
        if len(self._known) > self.KNOWN_MAX:
            del self._known[next(iter(self._known))]

    async def _write(self, key: str, record: UserRuns, revision: int | None) -> bool:
        """Compare-and-set; False when someone else changed the record first."""
        value = record.model_dump_json().encode()

        async def put() -> bool:
            try:
                if revision is None:
                    written = await self._kv.create(key, value)
                else:
                    written = await self._kv.update(key, value, last=revision)
            except WrongRevision:
                return False
            self._remember(key, record, written)
            return True

        return await self._guarded(put)

    async def _guarded(self, call: Callable[[], Awaitable[T]]) -> T:
        try:
            return await self._breaker.call(call, _KV_FAILURES)
        except _KV_FAILURES as exc:
            raise Unavailable(
                f"The run-slot store did not answer: {exc!r}", code=ErrorCode.STORE_UNAVAILABLE
            ) from exc
