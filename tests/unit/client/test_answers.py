"""``apex_client.Answers`` folds a thread's events into the run's answer: chunks placed by
index (each once), the latest message shown, a superseded message dropped for good."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from apex_client import Answers

RUN = "run_01M8TY3B4BBWJHNPXFSAXAZN66"


def delta(message: str, index: int, text: str) -> dict[str, Any]:
    return {
        "type": "message.delta",
        "run_id": RUN,
        "data": {"message_id": message, "index": index, "text": text},
    }


def superseded(*messages: str) -> dict[str, Any]:
    return {
        "type": "message.superseded",
        "run_id": RUN,
        "data": {"step": 3, "attempt": 2, "message_ids": list(messages)},
    }


def test_the_final_text_wins_and_a_new_message_replaces_the_last() -> None:
    answers = Answers()
    for event in (delta("m1", 0, "Draft "), delta("m1", 1, "one."), delta("m2", 0, "Second.")):
        answers.apply(event)
    assert answers.streamed(RUN) == "Second."
    answers.apply({"type": "run.completed", "run_id": RUN, "data": {"response": {"text": "Final."}}})
    assert answers.text(RUN) == "Final." and answers.streamed(RUN) == "Second."


@settings(max_examples=200, deadline=None)
@given(
    first=st.lists(st.text(min_size=1, max_size=5), min_size=1, max_size=6),
    second=st.lists(st.text(min_size=1, max_size=5), min_size=1, max_size=6),
    cut=st.integers(min_value=0, max_value=6),
    late=st.lists(st.integers(min_value=0, max_value=5), max_size=4),
    repeats=st.lists(st.integers(min_value=0, max_value=5), max_size=4),
)
def test_an_answer_is_never_a_mix_of_two_attempts(
    first: list[str], second: list[str], cut: int, late: list[int], repeats: list[int]
) -> None:
    """Attempt one streams some chunks, is superseded, may still send late chunks; attempt
    two streams its own (some delivered twice): the reader shows a prefix of one attempt's
    text at every moment, and attempt two's whole text at the end."""
    events = [delta("m1", i, t) for i, t in enumerate(first[:cut])]
    events.append(superseded("m1"))
    for i, text in enumerate(second):
        events.append(delta("m2", i, text))
        if late:
            n = late.pop() % len(first)
            events.append(delta("m1", n, first[n]))
        if repeats and repeats.pop() % 2:
            events.append(delta("m2", i, text))
    answers = Answers()
    after = False
    for event in events:
        answers.apply(event)
        after |= event["type"] == "message.superseded"
        shown = answers.streamed(RUN)
        assert ("".join(second) if after else "".join(first)).startswith(shown)
    assert answers.text(RUN) == "".join(second)
    assert answers.superseded("m1") and not answers.superseded("m2")
