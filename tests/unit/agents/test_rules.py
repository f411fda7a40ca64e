from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from apex_agents.offline.rules import classify, extract_models, extract_period

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
