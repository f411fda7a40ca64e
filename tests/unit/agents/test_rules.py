from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from apex_agents.offline.rules import classify, extract_models, extract_period, mentioned_models
from apex_contracts.pricing import PriceCatalogue

NOW = datetime(2026, 3, 18, 15, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("question", "intent"),
    [
        ("Where is my LLM spend going and how do I cut it?", "cost"),
        ("Why are my gpt-4o calls so slow? p95 is awful", "latency"),
        ("Which model should I use for ticket classification?", "model_choice"),
        ("Could caching repeated prompts save money?", "caching"),
        ("What will next month cost at this growth?", "forecast"),
        ("Give me an overview of our usage", "usage_overview"),
        ("What's the weather in Paris?", "out_of_scope"),
        ("Tell me about our AI agents", "general"),
    ],
)
def test_intent(question: str, intent: str) -> None:
    assert classify(question) == intent


def test_relative_periods() -> None:
    assert extract_period("cost over the last 7 days", NOW).start == NOW - timedelta(days=7)
    assert extract_period("spend in the past month", NOW).start == NOW - timedelta(days=30)
    period = extract_period("from 2026-02-01 to 2026-02-28", NOW)
    assert period.start == datetime(2026, 2, 1, tzinfo=UTC)
    assert period.end == datetime(2026, 3, 1, tzinfo=UTC)
    assert extract_period("where does the money go", NOW).start is None


def test_models_named_in_the_question() -> None:
    assert extract_models("compare gpt-4o-mini with claude-sonnet-4") == ["gpt-4o-mini", "claude-sonnet-4"]
    assert extract_models("is gpt-4o worth it?") == ["gpt-4o"]
    assert extract_models("nothing here") == []


@pytest.mark.parametrize(
    ("models", "texts", "kept"),
    [
        (["models"], ["Where is my LLM spend going and how do I cut it?"], []),
        (["models", "GPT-4o"], ["compare my models: is gpt-4o worth it?"], ["gpt-4o"]),
        (["gpt-4o"], ["how much does GPT 4o cost?"], ["gpt-4o"]),
        (["gpt-4o"], ["how much does gpt-4o-mini cost?"], []),
        (["claude-3-5-sonnet"], ["is Claude 3.5 Sonnet too slow?"], ["claude-3-5-sonnet"]),
        (["codestral"], ["what does codestral cost us"], ["codestral"]),
        (["acme-ft-7"], ["spend of acme-ft-7 last week"], ["acme-ft-7"]),
        (["gpt-4o", "gpt-4o"], ["gpt-4o?"], ["gpt-4o"]),
        (["gpt-4o"], ["and last week?", "why is gpt-4o slow"], ["gpt-4o"]),
        (["", "-", "4"], ["gpt 4 - 4o"], ["4"]),
    ],
)
def test_mentioned_models_keeps_only_what_the_question_names(
    models: list[str], texts: list[str], kept: list[str]
) -> None:
    assert mentioned_models(models, texts) == kept


@given(st.lists(st.text(max_size=30), max_size=8), st.lists(st.text(max_size=120), max_size=3))
def test_mentioned_models_is_a_subset_in_order(models: list[str], texts: list[str]) -> None:
    kept = mentioned_models(models, texts)
    lowered = [m.strip().lower() for m in models]
    assert len(set(kept)) == len(kept) and set(kept) <= set(lowered)
    assert kept == sorted(kept, key=lowered.index)


@given(
    st.sampled_from(sorted(PriceCatalogue.default().names())),
    st.sampled_from([" ", "-", "", "."]),
    st.booleans(),
    st.sampled_from(["?", "!", ",", " and", ""]),
)
def test_a_catalogue_name_written_any_way_is_kept(name: str, sep: str, upper: bool, after: str) -> None:
    written = name.replace("-", sep)
    question = f"what did {written.upper() if upper else written}{after} cost us"
    assert mentioned_models(["models", name.upper(), "gpt-99"], [question]) == [name]
