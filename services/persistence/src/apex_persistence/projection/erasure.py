"""Erasure tombstones as every projection sees them: ``thread.deleted`` with ``erase``
erases one thread, ``user.erased`` every thread of a user. A tombstone covers what came
before it in the log (a lower sequence) and the later events of the runs it names (runs
that were still going); nothing else, so a later thread or user is never touched. A
projection records the tombstone in its own store (so a redelivered or replayed event can
never bring the data back), deletes what it holds of the subject, and drops every event
the tombstone covers, whenever it arrives."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

import orjson
from pydantic import ValidationError

from apex_contracts import InvalidInput, ThreadDeleted, validate_id
from apex_contracts.events import UserErased
from apex_contracts.subjects import EVT_PREFIX

log = logging.getLogger(__name__)

ErasureKind = Literal["thread", "user"]


@dataclass(frozen=True, slots=True)
class Erasure:
    """What is to be erased (a thread, or every thread of a user), by which tombstone."""

    kind: ErasureKind
    tenant_id: str
    user_id: str
    thread_id: str | None
    seq: int
    event_id: str
    requested_by: str
    at: datetime
    runs: frozenset[str] = frozenset()

    def covers(self, tenant_id: str, user_id: str, thread_id: str, seq: int, run_id: str | None) -> bool:
        """True for an event of the erased thread or user up to the tombstone (itself
        included), or of one of the runs it names."""
        if (tenant_id, user_id) != (self.tenant_id, self.user_id):
            return False
        if self.kind == "thread" and thread_id != self.thread_id:
            return False
        return seq <= self.seq or (run_id is not None and run_id in self.runs)

    def extended_by(self, later: Erasure) -> Erasure:
        """This erasure and a later tombstone of the same target: the later one's reach."""
        newest = later if later.seq > self.seq else self
        return replace(newest, runs=self.runs | later.runs)

    @property
    def target(self) -> str:
        """``thread:<id>`` or ``user:<id>``: the audit entry's target."""
        return f"thread:{self.thread_id}" if self.kind == "thread" else f"user:{self.user_id}"

    @property
    def subject(self) -> str:
        """The log subjects that hold the erased data (a thread's, or a wildcard over a user's)."""
        tail = self.thread_id if self.kind == "thread" else ">"
        return f"{EVT_PREFIX}.{self.tenant_id}.{self.user_id}.{tail}"


def thread_erasure(seq: int, event: ThreadDeleted) -> Erasure | None:
    if not event.data.erase:
        return None
    return Erasure(
        "thread",
        event.tenant_id,
        event.user_id,
        event.thread_id,
        seq,
        event.id,
        event.data.requested_by,
        event.occurred_at,
        frozenset(event.data.runs),
    )


def is_user_subject(subject: str) -> bool:
    """``apex.evt.<tenant>.<user>.erased``: the one non-thread subject of the event log."""
    return subject.startswith(EVT_PREFIX + ".") and subject.endswith("." + UserErased.SUBJECT_TOKEN)


def user_erasure(seq: int, subject: str, data: bytes) -> Erasure | None:
    """The user erasure on ``subject``; None (logged) when it is not a valid one, or names
    another tenant or user than its subject: a forged tombstone must erase nothing."""
    try:
        event = UserErased.model_validate_json(data)
        parts = subject.split(".")
        owner = (validate_id(parts[2], "ten"), validate_id(parts[3], "usr"))
    except (ValidationError, InvalidInput, IndexError, orjson.JSONDecodeError) as exc:
        log.warning("skipping seq %d on %s: not a user erasure (%s)", seq, subject, exc)
        return None
    if owner != (event.tenant_id, event.user_id) or subject != UserErased.subject(*owner):
        log.warning("skipping seq %d: user erasure %s does not belong to %s", seq, event.id, subject)
        return None
    return Erasure(
        "user",
        event.tenant_id,
        event.user_id,
        None,
        seq,
        event.id,
        event.data.requested_by,
        event.occurred_at,
        frozenset(event.data.runs),
    )


def per_target(erasures: Iterable[Erasure]) -> list[Erasure]:
    """One erasure per thread or user, reaching as far as its latest tombstone (and
    naming every run any of them named), in sequence order."""
    seen: dict[tuple[str, str, str | None], Erasure] = {}
    for erasure in sorted(erasures, key=lambda e: e.seq):
        key = (erasure.kind, erasure.tenant_id, erasure.thread_id or erasure.user_id)
        seen[key] = seen[key].extended_by(erasure) if key in seen else erasure
    return sorted(seen.values(), key=lambda e: e.seq)


def covered(
    erasures: Iterable[Erasure], tenant_id: str, user_id: str, thread_id: str, seq: int, run_id: str | None
) -> bool:
    return any(e.covers(tenant_id, user_id, thread_id, seq, run_id) for e in erasures)
