"""What a projector receives: a stream message with its sequence, decoded into a
contract event once it is known to belong to the subject it was published on."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import ValidationError

from apex_contracts import Event, InvalidInput, parse_event
from apex_contracts.subjects import parse_thread_subject

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


def last_seq(batch: Sequence[Delivery]) -> int:
    return max((delivery.seq for delivery in batch), default=0)


def decode_events(batch: Iterable[Delivery]) -> list[Projected]:
    """The batch as events, in stream order, once per event id (the lowest seq wins).
    A message that is not a valid event of the thread its subject names is skipped: it
    can never become valid, and a forged tenant must not reach any view."""
    by_id: dict[str, Projected] = {}
    for delivery in sorted(batch, key=lambda d: d.seq):
        projected = _decode(delivery)
        if projected is not None and projected.event.id not in by_id:
            by_id[projected.event.id] = projected
    return list(by_id.values())


def _decode(delivery: Delivery) -> Projected | None:
    try:
        payload = orjson.loads(delivery.data)
        event = parse_event(payload)
        owner = parse_thread_subject(delivery.subject)
    except (orjson.JSONDecodeError, ValidationError, InvalidInput, ValueError) as exc:
        log.warning("skipping seq %d on %s: not a valid event (%s)", delivery.seq, delivery.subject, exc)
        return None
    if owner != (event.tenant_id, event.user_id, event.thread_id):
        log.warning("skipping seq %d: event %s does not belong to %s", delivery.seq, event.id, delivery.subject)
        return None
    return Projected(seq=delivery.seq, event=event, payload=payload)
