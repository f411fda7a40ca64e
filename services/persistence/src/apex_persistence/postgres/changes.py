"""From events to row changes of the history tables (pure; no database here).

Every change is written so that applying it commutes with every other change of the
same batch or of any other batch: threads keep the earliest creation and the latest
update, a title comes from the earliest message unless a later rename replaced it,
a run's status moves only further in the run's life (accepted < running < terminal) or,
at the same stage, to a higher sequence, counters add only events seen for the first
time (the archive decides that). Because they commute, the changes of one batch are
merged per thread and per run before they are written (fewer rows, same result).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from apex_contracts import (
    AgentCompleted,
    Event,
    MessageCreated,
    RunCompleted,
    ThreadDeleted,
    ThreadRenamed,
    ToolExecuting,
)
from apex_contracts.dedupe_ids import answer_message_id
from apex_persistence.projection import facts
from apex_persistence.projection.delivery import Projected

Row = dict[str, Any]


@dataclass
class HistoryChanges:
    threads: list[Row] = field(default_factory=list)
    titles: list[Row] = field(default_factory=list)
    messages: list[Row] = field(default_factory=list)
    runs: list[Row] = field(default_factory=list)
    deletions: list[Row] = field(default_factory=list)


def archive_row(projected: Projected) -> Row:
    event = projected.event
    return {
        "id": event.id,
        "seq": projected.seq,
        "tenant_id": event.tenant_id,
        "user_id": event.user_id,
        "thread_id": event.thread_id,
        "run_id": event.run_id,
        "type": event.type,
        "occurred_at": event.occurred_at,
        "payload": projected.payload,
    }


def history_changes(fresh: Iterable[Projected]) -> HistoryChanges:
    """The changes of events the archive has just accepted for the first time."""
    changes = HistoryChanges()
    for projected in fresh:
        _collect(changes, projected.seq, projected.event)
    changes.threads = _merge_touches(changes.threads)
    changes.runs = merge_runs(changes.runs)
    return changes


def _status_key(change: Row) -> tuple[int, int]:
    return facts.status_rank(change["status"]), change["status_seq"]


def merge_runs(runs: list[Row]) -> list[Row]:
    """One change per run with the same effect as applying each (see ``upsert_run``)."""
    merged: dict[str, Row] = {}
    for change in runs:
        seen = merged.get(change["id"])
        if seen is None:
            merged[change["id"]] = dict(change)
            continue
        if _status_key(change) > _status_key(seen):
            seen["status"], seen["status_seq"] = change["status"], change["status_seq"]
        seen["started_at"] = min(seen["started_at"], change["started_at"])
        seen["updated_at"] = max(seen["updated_at"], change["updated_at"])
        seen["tool_calls"] += change["tool_calls"]
        seen["llm_tokens"] += change["llm_tokens"]
        for first_known in ("ended_at", "duration_ms", "error_code", "reported_tokens", "llm_cost_usd"):
            if seen[first_known] is None:
                seen[first_known] = change[first_known]
    return list(merged.values())


def _merge_touches(touches: list[Row]) -> list[Row]:
    """One touch per thread: the earliest and the latest moment seen (same effect as
    applying each, since the upsert keeps the least and the greatest)."""
    merged: dict[str, Row] = {}
    for touch in touches:
        seen = merged.get(touch["id"])
        if seen is None:
            merged[touch["id"]] = dict(touch)
        else:
            seen["created_at"] = min(seen["created_at"], touch["created_at"])
            seen["updated_at"] = max(seen["updated_at"], touch["updated_at"])
    return list(merged.values())


def _collect(changes: HistoryChanges, seq: int, event: Event) -> None:
    changes.threads.append(
        {
            "id": event.thread_id,
            "tenant_id": event.tenant_id,
            "user_id": event.user_id,
            "created_at": event.occurred_at,
            "updated_at": event.occurred_at,
        }
    )
    if isinstance(event, MessageCreated):
        changes.titles.append(_title(event.thread_id, facts.proposed_title(event), seq, "message"))
        changes.messages.append(_message(event, event.data.message_id, "user", event.data.content, seq))
    elif isinstance(event, ThreadRenamed):
        changes.titles.append(_title(event.thread_id, event.data.title, seq, "rename"))
    elif isinstance(event, ThreadDeleted):
        changes.deletions.append({"id": event.thread_id, "at": event.occurred_at})
    if isinstance(event, RunCompleted) and event.run_id is not None:
        message_id = answer_message_id(event.run_id)
        changes.messages.append(_message(event, message_id, "assistant", event.data.response.text, seq))
    run = run_change(seq, event)
    if run is not None:
        changes.runs.append(run)


def _title(thread_id: str, title: str, seq: int, source: str) -> Row:
    return {"id": thread_id, "title": title, "seq": seq, "source": source}


def _message(event: Event, message_id: str, role: str, content: str, seq: int) -> Row:
    return {
        "id": message_id,
        "tenant_id": event.tenant_id,
        "thread_id": event.thread_id,
        "role": role,
        "content": content,
        "run_id": event.run_id,
        "seq": seq,
        "created_at": event.occurred_at,
    }


def run_change(seq: int, event: Event) -> Row | None:
    """The upsert a run event makes on its run; None for events of no run."""
    if event.run_id is None or isinstance(event, MessageCreated | ThreadRenamed | ThreadDeleted):
        return None
    status = facts.run_status(event)
    terminal = status in facts.TERMINAL_STATUSES
    return {
        "id": event.run_id,
        "tenant_id": event.tenant_id,
        "user_id": event.user_id,
        "thread_id": event.thread_id,
        "status": status or "accepted",
        "status_seq": seq if status is not None else 0,
        "started_at": event.occurred_at,
        "updated_at": event.occurred_at,
        "ended_at": event.occurred_at if terminal else None,
        "duration_ms": facts.duration_ms(event) if terminal else None,
        "error_code": facts.error_code(event),
        "tool_calls": 1 if isinstance(event, ToolExecuting) else 0,
        "llm_tokens": event.data.tokens if isinstance(event, AgentCompleted) else 0,
        "reported_tokens": event.data.usage.llm_tokens if isinstance(event, RunCompleted) else None,
        "llm_cost_usd": event.data.usage.llm_cost_usd if isinstance(event, RunCompleted) else None,
    }
