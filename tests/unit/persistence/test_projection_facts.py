"""Event -> row mapping of the history tables and the analytics events table."""

from __future__ import annotations

import random

from apex_contracts import ThreadRenamed, ThreadRenamedData, derive_id, new_id
from apex_persistence.analytics.rows import event_row
from apex_persistence.postgres.changes import history_changes, merge_runs, run_change
from apex_persistence.projection.delivery import Delivery, decode_events
from apex_persistence.projection.facts import title_from


def test_a_run_becomes_a_thread_two_messages_and_a_run(story) -> None:
    s = story.scope()
    projected = decode_events(story.deliveries(story.run_events(s, "How much did GPT-4o cost us?")))
    changes = history_changes(projected)

    assert [t["id"] for t in changes.threads] == [s.thread_id]
    assert changes.threads[0]["created_at"] < changes.threads[0]["updated_at"]
    assert changes.titles == [
        {"id": s.thread_id, "title": "How much did GPT-4o cost us?", "seq": 1, "source": "message"}
    ]
    user, assistant = changes.messages
    assert (user["role"], user["content"], user["seq"]) == ("user", "How much did GPT-4o cost us?", 1)
    assert assistant["id"] == derive_id("msg", s.run_id, "assistant")
    assert (assistant["role"], assistant["content"]) == ("assistant", "You spent $12.00.")
    [run] = changes.runs  # one change per run: the batch's changes merged
    assert (run["status"], run["status_seq"], run["tool_calls"], run["llm_tokens"]) == (
        "completed",
        5,
        1,
        120,
    )
    assert (run["duration_ms"], run["reported_tokens"], run["error_code"]) == (1500, 120, None)
    assert run["started_at"] < run["updated_at"] == run["ended_at"]


def test_merged_run_changes_do_not_depend_on_the_order(story) -> None:
    s = story.scope()
    events = story.run_events(s, failed=True)
    late = story.at(events[2].model_copy(update={"id": "late-tool"}), 10)  # a tool call after the end
    projected = decode_events(story.deliveries([*events, late]))
    changes = [run_change(p.seq, p.event) for p in projected]
    expected = merge_runs([c for c in changes if c])
    rng = random.Random(5)
    for _ in range(20):
        rng.shuffle(changes)
        assert merge_runs([c for c in changes if c]) == expected
    [run] = expected
    assert (run["status"], run["status_seq"], run["tool_calls"]) == ("failed", 5, 2)


def test_a_failed_run_carries_its_error_code(story) -> None:
    s = story.scope()
    end = decode_events(story.deliveries(story.run_events(s, failed=True)))[-1]
    change = run_change(end.seq, end.event)
    assert change is not None
    assert (change["status"], change["error_code"], change["duration_ms"]) == ("failed", "tool_failed", 900)
    assert change["ended_at"] == end.event.occurred_at


def test_a_rename_proposes_a_title_that_outranks_messages(story) -> None:
    s = story.scope(run=False)
    renamed = s.make(ThreadRenamed, ThreadRenamedData(title="Costs Q1"), id=new_id("evt"))
    changes = history_changes(decode_events(story.deliveries([renamed], first_seq=9)))
    assert changes.titles == [{"id": s.thread_id, "title": "Costs Q1", "seq": 9, "source": "rename"}]
    assert changes.runs == []


def test_title_is_the_first_words() -> None:
    assert title_from("  what   is my spend  ") == "what is my spend"
    assert (
        title_from("one two three four five six seven eight nine")
        == "one two three four five six seven eight…"
    )
    assert len(title_from("x" * 300)) == 80
    assert title_from("   ") == "New chat"


def test_decode_skips_forged_subjects_and_duplicate_ids(story) -> None:
    s = story.scope()
    events = story.run_events(s)
    good = story.deliveries(events)
    other = story.scope()
    forged = Delivery(99, f"apex.evt.{other.tenant_id}.{s.user_id}.{s.thread_id}", events[0].wire())
    garbage = Delivery(100, good[0].subject, b"{not json")
    again = Delivery(101, good[1].subject, good[1].data)
    projected = decode_events([again, forged, garbage, *reversed(good)])
    assert [p.seq for p in projected] == [1, 2, 3, 4, 5]


def test_event_row_for_analytics(story) -> None:
    s = story.scope()
    projected = decode_events(story.deliveries(story.run_events(s)))
    rows = [event_row(p) for p in projected]
    tool, agent, end = rows[2], rows[3], rows[4]
    assert (tool["type"], tool["tool"], tool["duration_ms"]) == ("tool_executing", "usage_coverage", None)
    assert (agent["agent"], agent["duration_ms"], agent["tokens"]) == ("supervisor", 40, 120)
    assert (end["status"], end["duration_ms"], end["tokens"]) == ("completed", 1500, 120)
    assert end["occurred_at"] == "2026-01-05 10:00:04.000"
    assert all(r["tenant_id"] == s.tenant_id and r["run_id"] == s.run_id for r in rows)
