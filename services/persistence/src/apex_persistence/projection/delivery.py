"""What a projector receives: a stream message with its sequence, decoded into a
contract event once it is known to belong to the subject it was published on, and the
erasure tombstones among them (``thread.deleted`` with ``erase``, ``user.erased``)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import ValidationError

from apex_contracts import Event, InvalidInput, ThreadDeleted, parse_event
from apex_contracts.subjects import parse_thread_subject
from apex_persistence.projection.erasure import (
    Erasure,
    covered,
    is_user_subject,
    thread_erasure,
    user_erasure,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One stream message as delivered: stream sequence, subject and raw bytes."""

    seq: int
    subject: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Projected:
    """A decoded event of the log, with its stream sequence and the payload as published."""

    seq: int
    event: Event
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Decoded:
    """A batch as thread events (once per id, in stream order) and the erasures in it."""

    events: list[Projected]
    erasures: list[Erasure]

    def without(self, erased: Sequence[Erasure]) -> list[Projected]:
        """The events that no erasure covers."""
        if not erased:
            return self.events
        return [p for p in self.events if not covers(erased, p)]


def covers(erased: Sequence[Erasure], p: Projected) -> bool:
    """Whether one of ``erased`` covers the event."""
    event = p.event
    return covered(erased, event.tenant_id, event.user_id, event.thread_id, p.seq, event.run_id)


def last_seq(batch: Sequence[Delivery]) -> int:
    return max((delivery.seq for delivery in batch), default=0)


def decode(batch: Iterable[Delivery]) -> Decoded:
    """Thread events (see ``decode_events``) and erasure tombstones of the batch."""
    ordered = sorted(batch, key=lambda d: d.seq)
    erasures = [
        erasure
        for d in ordered
        if is_user_subject(d.subject) and (erasure := user_erasure(d.seq, d.subject, d.data)) is not None
    ]
    events = decode_events(d for d in ordered if not is_user_subject(d.subject))
    erasures += [
        e for p in events if isinstance(p.event, ThreadDeleted) and (e := thread_erasure(p.seq, p.event))
    ]
    return Decoded(events, sorted(erasures, key=lambda e: e.seq))


def decode_events(batch: Iterable[Delivery]) -> list[Projected]:
    """The batch as events, in stream order, once per event id (the lowest seq wins).
    A message that is not a valid event of the thread its subject names is skipped: it
    can never become valid, and a forged tenant must not reach any view."""
    by_id: dict[str, Projected] = {}
    for delivery in sorted(batch, key=lambda d: d.seq):
        projected = _decode(delivery.seq, delivery.subject, delivery.data)
        if projected is not None and projected.event.id not in by_id:
            by_id[projected.event.id] = projected
    return list(by_id.values())


# The three projectors of a process read the same messages within moments of each other:
# each message is validated once, not three times (its decoded form is immutable and
# shared; the payload dict is never modified).
@functools.lru_cache(maxsize=4096)
def _decode(seq: int, subject: str, data: bytes) -> Projected | None:
    try:
        payload = orjson.loads(data)
        event = parse_event(payload)
        owner = parse_thread_subject(subject)
    except (orjson.JSONDecodeError, ValidationError, InvalidInput, ValueError) as exc:
        log.warning("skipping seq %d on %s: not a valid event (%s)", seq, subject, exc)
        return None
    if owner != (event.tenant_id, event.user_id, event.thread_id):
        log.warning("skipping seq %d: event %s does not belong to %s", seq, event.id, subject)
        return None
    return Projected(seq=seq, event=event, payload=payload)
