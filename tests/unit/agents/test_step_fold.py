"""Where a step attempt starts, folded from the typed events of its run; an event written
in an older version is upcast where it is read and folds like its current form."""

from __future__ import annotations

from typing import Any

import orjson

from apex_agents.context import event_types, thread_event
from apex_agents.stepper import Start, fold_start
from apex_contracts import MessageDelta, new_id
from apex_contracts.dedupe_ids import message_delta_id, reply_message_id

RUN = new_id("run")
STEP = 2


def delta(attempt: int, *, version: int) -> dict[str, Any]:
    """A streamed chunk of ``attempt`` of step ``STEP``: v1 named its step only in its id."""
    data: dict[str, Any] = {
        "message_id": reply_message_id(RUN, STEP, attempt, 0),
        "index": 0,
        "text": "Your spend",
        "attempt": attempt,
    }
    if version >= 2:
        data["step"] = STEP
    return {
        "id": message_delta_id(RUN, STEP, attempt, 0, 0),
        "type": "message.delta",
        "schema_version": version,
        "tenant_id": new_id("ten"),
        "user_id": new_id("usr"),
        "thread_id": new_id("thr"),
        "run_id": RUN,
        "data": data,
    }


def folded(raw: dict[str, Any], attempt: int) -> tuple[bool, Start]:
    event = thread_event(orjson.dumps(raw))
    assert event is not None
    start = Start()
    return fold_start(start, 9, event, STEP, attempt), start


def test_an_old_version_delta_is_upcast_and_folds_like_a_current_one() -> None:
    old = thread_event(orjson.dumps(delta(1, version=1)))
    assert isinstance(old, MessageDelta) and old.schema_version == 2 and old.data.step == STEP
    # attempt 2 finds attempt 1's text, whichever version wrote it: it supersedes it
    assert folded(delta(1, version=1), attempt=2) == folded(delta(1, version=2), attempt=2)
    stop, start = folded(delta(1, version=1), attempt=2)
    assert not stop and list(start.partial) == [reply_message_id(RUN, STEP, 1, 0)]
    # attempt 1 finds a later attempt's text: it is stale, whichever version wrote it
    assert folded(delta(2, version=1), attempt=1)[0] and folded(delta(2, version=2), attempt=1)[0]


def test_an_event_of_an_unknown_type_is_skipped() -> None:
    assert thread_event({**delta(1, version=2), "type": "message.reacted"}) is None


def test_a_reader_of_some_types_parses_only_those(caplog: Any) -> None:
    """A waiter names the types it looks for: any other message is passed over unparsed,
    even a malformed one (nothing logged); its own types are parsed and upcast."""
    wanted = event_types(MessageDelta)
    other = {**delta(1, version=2), "type": "run.completed", "data": {"not": "valid"}}
    assert thread_event(other, wanted) is None
    assert not caplog.records
    event = thread_event(delta(1, version=1), wanted)
    assert isinstance(event, MessageDelta) and event.data.step == STEP
    assert thread_event(other) is None and caplog.records, "unfiltered, the malformed one is parsed"
