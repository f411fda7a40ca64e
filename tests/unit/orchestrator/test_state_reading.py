"""Events are parsed where the orchestrator reads them: a malformed event of the run
stops the run's decisions, one of another run or of an unknown type is skipped."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from apex_contracts import RunAccepted, new_id, utcnow
from apex_orchestrator.state import RunState, UnreadableEvent, read_logged

RUN = new_id("run")


def raw(kind: str, run: str = RUN, **data: Any) -> bytes:
    return orjson.dumps(
        {
            "id": new_id("evt"),
            "type": kind,
            "tenant_id": new_id("ten"),
            "user_id": new_id("usr"),
            "thread_id": new_id("thr"),
            "run_id": run,
            "occurred_at": utcnow().isoformat(),
            "data": data,
        }
    )


def test_a_malformed_event_of_the_run_is_unreadable() -> None:
    with pytest.raises(UnreadableEvent):
        read_logged(RUN, raw("agent_completed", agent="supervisor"))


def test_a_malformed_event_of_another_run_and_an_unknown_type_are_skipped() -> None:
    assert read_logged(RUN, raw("agent_completed", run=new_id("run"), agent="supervisor")) is None
    assert read_logged(RUN, raw("run.teleported")) is None
    accepted = read_logged(RUN, raw("run.accepted", message_id=new_id("msg"), question="q"))
    assert isinstance(accepted, RunAccepted)
    state = RunState.fold(RUN, [(1, None), (2, accepted)])
    assert state.accepted and state.last_seq == 2
