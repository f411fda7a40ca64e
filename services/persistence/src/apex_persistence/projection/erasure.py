"""Erasure tombstones as every projection sees them: ``thread.deleted`` with ``erase``
erases one thread, ``user.erased`` every thread of a user. A projection records the
tombstone in its own store (so a redelivered or replayed event can never bring the data
back), deletes what it holds of the subject, and drops every later event it covers."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
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

    def covers(self, tenant_id: str, user_id: str, thread_id: str) -> bool:
        if tenant_id != self.tenant_id:
            return False
        if self.kind == "user":
            return user_id == self.user_id
        return thread_id == self.thread_id

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
    )


def first_per_target(erasures: Iterable[Erasure]) -> list[Erasure]:
    """One erasure per thread or user (the earliest), in sequence order."""
    seen: dict[tuple[str, str, str | None], Erasure] = {}
    for erasure in sorted(erasures, key=lambda e: e.seq):
        seen.setdefault((erasure.kind, erasure.tenant_id, erasure.thread_id or erasure.user_id), erasure)
    return list(seen.values())
