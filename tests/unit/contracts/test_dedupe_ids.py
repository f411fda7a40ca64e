"""The ids a retry must reproduce: the same facts give the same ids, different facts
(different kinds, steps, attempts, calls) never share one, and the table in
docs/architecture.md is the one the module renders."""

from __future__ import annotations

import inspect
from pathlib import Path

from apex_contracts import dedupe_ids as ids
from apex_contracts import is_id, new_id

RUN, THREAD, USER, CALL = new_id("run"), new_id("thr"), new_id("usr"), new_id("call")
DOCS = Path(__file__).resolve().parents[3] / "docs"


def every_id(run: str) -> list[str]:
    """One id of each kind (and of each variant of a kind) for ``run``."""
    return [
        ids.message_created_id(run),
        ids.run_start_id(run),
        ids.run_cancel_id(run),
        ids.run_accepted_id(run),
        ids.run_queued_id(run),
        ids.run_waiting_for_service_id(run),
        ids.run_cancel_requested_id(run),
        ids.terminal_id(run),
        ids.agent_step_id(run, 0),
        ids.agent_step_id(run, 1),
        ids.agent_event_id(run, 0, "agent_started"),
        ids.agent_event_id(run, 0, "agent_completed"),
        ids.agent_event_id(run, 0, "agent_failed"),
        ids.agent_thinking_id(run, 0, 0),
        ids.agent_thinking_id(run, 0, 1),
        ids.message_delta_id(run, 0, 1, 0, 0),
        ids.message_delta_id(run, 0, 2, 0, 0),
        ids.message_delta_id(run, 0, 1, 0, 1),
        ids.message_superseded_id(run, 0, 2),
        ids.tool_event_id(run, CALL, "tool.call"),
        ids.tool_event_id(run, CALL, "tool_executing"),
        ids.tool_event_id(run, CALL, "tool_completed"),
        ids.call_id_for(run, 0, 0),
        ids.call_id_for(run, 0, 1),
        ids.reply_message_id(run, 0, 1, 0),
        ids.reply_message_id(run, 0, 2, 0),
        ids.answer_message_id(run),
    ]


def test_the_same_fact_always_gets_the_same_id() -> None:
    assert every_id(RUN) == every_id(RUN)
    assert ids.terminal_id(RUN) == f"{RUN}:terminal"
    assert ids.message_delta_id(RUN, 2, 3, 4, 5) == f"{RUN}:2:a3:delta:4:5"
    assert ids.run_id_for("ten_a", "usr_b", "c1") == ids.run_id_for("ten_a", "usr_b", "c1")


def test_different_facts_never_share_an_id() -> None:
    other = new_id("run")
    all_ids = every_id(RUN) + every_id(other)
    assert len(set(all_ids)) == len(all_ids)
    thread = [
        ids.thread_hidden_id(THREAD),
        ids.thread_erased_id(THREAD, 7),
        ids.thread_erased_id(THREAD, 8),
        ids.thread_renamed_id(THREAD, new_id("evt")),
        ids.thread_renamed_id(THREAD, new_id("evt")),
        ids.user_erased_id(USER),
        ids.user_erased_id(USER, account_closed=True),
    ]
    assert len(set(thread)) == len(thread)
    derived = [f(new_id("ten"), USER, "c1") for f in (ids.run_id_for, ids.thread_id_for, ids.message_id_for)]
    assert [is_id(d, p) for d, p in zip(derived, ("run", "thr", "msg"), strict=True)] == [True] * 3


def test_every_id_fits_an_envelope_id() -> None:
    from apex_contracts.envelope import _check_message_id

    long_event = "x" * 200
    for value in [*every_id(RUN), ids.dead_letter_id("APEX_CMD", 12), ids.erasure_audit_id(long_event)]:
        assert _check_message_id(value) == value


def test_every_id_function_is_in_the_table() -> None:
    public = {
        name
        for name, fn in inspect.getmembers(ids, inspect.isfunction)
        if fn.__module__ == ids.__name__ and not name.startswith("_")
    }
    assert public == {rule.function.__name__ for rule in ids.RULES}


def test_the_architecture_document_shows_the_rendered_table() -> None:
    from scripts.gen_docs import dedupe_ids_table

    assert dedupe_ids_table() in (DOCS / "architecture.md").read_text(), "run `make docs`"
