"""Usage priced with the maintained table (genai-prices): the 59 models of the hand-kept
list Apex had until now price the same (every difference named and explained), prices
at the record's own moment, long-context bands, cache reads and writes, batch, priority
and flex tiers, names with provider prefixes and dates, unpriced models, and tenant
overrides on top."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import genai_prices
import pytest
from genai_prices.data_snapshot import get_snapshot
from hypothesis import given, settings
from hypothesis import strategies as st

from apex_contracts import UsageRecord
from apex_contracts.price_table import Tokens, call_cost, models_in_table, providers_in_table
from apex_contracts.pricing import OVERRIDE, TABLE, PriceCatalogue, PriceOverride

OLD = json.loads((Path(__file__).parent / "data" / "prices-2026-03-21.json").read_text())
AS_OF = datetime(2026, 3, 21, tzinfo=UTC)
SMALL = (12_000, 800, 3_000)  # prompt, completion, cached: well inside every first band
LONG = (300_000, 800, 0)  # past every long-context band

# Where the table and the old list disagree, and why (the closing note lists these).
DIFFERENT = {
    "claude-sonnet-4-5": "long context: past 200k input tokens every token costs $6/$22.50 (the list had one band)",
    "gemini-3-pro": "long context: past 200k input tokens $4/$18 (the list had one band)",
    "gemini-2.5-pro": "long context: past 200k input tokens $2.50/$15 (the list had one band)",
    "gemini-1.5-flash": "long context: past 128k input tokens the price doubles (the list had one band)",
    "gemini-1.5-pro": "long context past 128k doubles; the table has no cache-read price, so cache reads cost "
    "the input price ($1.25, the list said $0.3125)",
    "mistral-medium": "the table has Mistral's cache-read price ($0.04); the list had none (input price)",
    "mistral-small": "mistral-small-latest is Mistral Small 4 ($0.15/$0.60) in the table; the list priced "
    "Small 3.2 ($0.10/$0.30)",
}


def old_cost(entry: dict[str, Any], prompt: int, completion: int, cached: int) -> float:
    cached_price = entry["input"] if entry["cached_input"] is None else entry["cached_input"]
    return ((prompt - cached) * entry["input"] + cached * cached_price + completion * entry["output"]) / 1e6


@pytest.mark.parametrize("entry", OLD["models"], ids=lambda e: f"{e['provider']}/{e['model']}")
def test_the_59_models_of_the_old_list_price_the_same_or_the_difference_is_named(
    entry: dict[str, Any],
) -> None:
    catalogue = PriceCatalogue.default()
    for tokens in (SMALL, LONG):
        new = catalogue.cost_usd(entry["provider"], entry["model"], *tokens, at=AS_OF)
        assert new is not None, f"{entry['model']} is priced by the table"
        same = new == pytest.approx(old_cost(entry, *tokens), rel=1e-9)
        if entry["model"] not in DIFFERENT:
            assert same, (entry["model"], tokens)
    found = catalogue.find(entry["provider"], entry["model"], AS_OF)
    assert found is not None and found.tier == entry["tier"] and found.legacy == entry.get("legacy", False)
    if entry["model"] in DIFFERENT:
        differs = [
            catalogue.cost_usd(entry["provider"], entry["model"], *tokens, at=AS_OF)
            != pytest.approx(old_cost(entry, *tokens), rel=1e-9)
            for tokens in (SMALL, LONG)
        ]
        assert any(differs), f"{entry['model']} is listed as different but prices the same"


def test_the_table_is_pinned_and_large() -> None:
    assert TABLE == f"genai-prices {genai_prices.__version__}" == "genai-prices 0.2.3"
    assert models_in_table() > 2000 and providers_in_table() > 40
    assert len(OLD["models"]) == 59


def test_prices_at_the_records_own_moment() -> None:
    """o3 cost $10 per million input tokens until 2025-06-10, then $2."""
    catalogue = PriceCatalogue.default()
    before = catalogue.cost_usd("openai", "o3", 1_000_000, 0, at=datetime(2025, 6, 1, tzinfo=UTC))
    after = catalogue.cost_usd("openai", "o3", 1_000_000, 0, at=datetime(2025, 6, 11, tzinfo=UTC))
    assert (before, after) == (pytest.approx(10.0), pytest.approx(2.0))
    record = UsageRecord(
        ts="2025-06-01T12:00:00Z", provider="openai", model="o3", prompt_tokens=10**6, completion_tokens=0
    )
    assert catalogue.price(record).cost_usd == pytest.approx(10.0)


def test_cache_reads_and_writes_and_long_context_bands() -> None:
    catalogue = PriceCatalogue.default()
    # claude-sonnet-4-5: input $3, cache read $0.30, cache write $3.75, output $15
    cost = catalogue.cost_usd("anthropic", "claude-sonnet-4-5", 100_000, 1_000, 40_000, 10_000, at=AS_OF)
    assert cost == pytest.approx((50_000 * 3 + 40_000 * 0.3 + 10_000 * 3.75 + 1_000 * 15) / 1e6)
    # past 200k input tokens every token of the call costs the long-context band
    long = catalogue.cost_usd("anthropic", "claude-sonnet-4-5", 250_000, 1_000, at=AS_OF)
    assert long == pytest.approx((250_000 * 6 + 1_000 * 22.5) / 1e6)
    assert catalogue.find("anthropic", "claude-sonnet-4-5", AS_OF).long_context_above == 200_000  # type: ignore[union-attr]


def test_batch_priority_and_flex_tiers() -> None:
    catalogue = PriceCatalogue.default()

    def priced(tier: str | None, ts: str = "2026-11-01T00:00:00Z", model: str = "gpt-5") -> float | None:
        record = UsageRecord(
            ts=ts,
            provider="openai",
            model=model,
            prompt_tokens=10**6,
            completion_tokens=10**6,
            service_tier=tier,
        )
        return catalogue.price(record).cost_usd

    assert priced(None) == pytest.approx(1.25 + 10)
    assert priced("default") == pytest.approx(1.25 + 10)
    assert priced("priority") == pytest.approx(2.5 + 20), "the table's priority price"
    assert priced("flex") == pytest.approx(0.625 + 5), "the table's flex price"
    assert priced("batch", model="gpt-4o") == pytest.approx(1.25 + 5), "the table's batch price"
    # before the table has batch prices (2026-10-14), the provider's published discount
    assert priced("batch", "2026-03-21T00:00:00Z", "gpt-4o") == pytest.approx((2.5 + 10) * 0.5)
    # priority before the table has it: priced as standard (the premium is unknown)
    assert priced("priority", "2026-03-21T00:00:00Z") == pytest.approx(1.25 + 10)


@pytest.mark.parametrize(
    ("provider", "name", "table_model"),
    [
        ("openai", "gpt-4o-2024-08-06", "gpt-4o"),
        ("openai", "openai/gpt-4o", "gpt-4o"),
        ("azure", "gpt-4o", "gpt-4o"),
        ("google", "models/gemini-2.5-flash", "gemini-2.5-flash"),
        ("vertex_ai", "gemini-2.5-flash", "gemini-2.5-flash"),
        ("bedrock", "us.meta.llama3-3-70b-instruct-v1:0", "meta.llama3-3-70b-instruct-v1:0"),
        ("aws.bedrock", "us.anthropic.claude-3-5-sonnet-20241022-v2:0", None),
        ("", "claude-haiku-4-5", "claude-haiku-4-5"),
        ("deepseek", "deepseek-chat", None),
        ("x-ai", "grok-3", None),
    ],
)
def test_names_with_prefixes_dates_and_other_providers_are_priced(
    provider: str, name: str, table_model: str | None
) -> None:
    found = PriceCatalogue.default().find(provider, name, AS_OF)
    assert found is not None and found.input > 0 and found.source == TABLE
    if table_model:
        assert found.table_model == table_model


def test_a_model_no_table_knows_is_unpriced_never_zero() -> None:
    catalogue = PriceCatalogue.default()
    assert catalogue.find("acme", "acme-ft-1") is None
    record = UsageRecord(
        ts="2026-01-05T00:00:00Z", provider="acme", model="acme-ft-1", prompt_tokens=5, completion_tokens=5
    )
    priced = catalogue.price(record)
    assert priced.cost_usd is None and priced.source == "unpriced"


def test_tenant_overrides_sit_on_top_of_the_table() -> None:
    catalogue = PriceCatalogue.default().with_overrides(
        [
            PriceOverride(provider="openai", model="gpt-4o", input=1.0, output=4.0),
            PriceOverride(provider="acme", model="acme-ft-1", input=2.0, output=2.0, tier="small"),
        ]
    )
    assert catalogue.cost_usd("openai", "gpt-4o", 10**6, 10**6) == pytest.approx(5.0)
    assert catalogue.cost_usd("openai", "gpt-4o-2024-08-06", 10**6, 0) == pytest.approx(1.0)
    mini = catalogue.find("openai", "gpt-4o-mini")
    assert mini is not None and mini.source == TABLE, "an override of gpt-4o is not one of gpt-4o-mini"
    acme = catalogue.find("acme", "acme-ft-1")
    assert (
        acme is not None and acme.source == OVERRIDE and catalogue.is_override(acme) and acme.tier == "small"
    )
    record = UsageRecord(
        ts="2026-01-05T00:00:00Z",
        provider="acme",
        model="acme-ft-1",
        prompt_tokens=10**6,
        completion_tokens=0,
    )
    assert catalogue.price(record).model_dump() == {"cost_usd": 2.0, "source": OVERRIDE}


def test_substitution_tiers_are_our_mapping_over_the_table() -> None:
    catalogue = PriceCatalogue.default()
    opus = catalogue.find("anthropic", "claude-opus-4-1", AS_OF)
    assert opus is not None
    alternatives = {m.model: similar for m, similar in catalogue.alternatives(opus, AS_OF)}
    assert alternatives["claude-opus-4-6"] is True and alternatives["claude-sonnet-4-6"] is False
    assert "claude-3-opus" not in alternatives, "legacy models are never proposed"


_TABLE_MODELS = [(p.id, m) for p in get_snapshot().providers for m in p.models]


@settings(max_examples=150, deadline=None)
@given(
    which=st.integers(0, len(_TABLE_MODELS) - 1),
    prompt=st.integers(0, 2_000_000),
    completion=st.integers(0, 200_000),
    cached_share=st.floats(0, 1),
    written_share=st.floats(0, 1),
    day=st.dates(min_value=datetime(2024, 1, 1).date(), max_value=datetime(2026, 12, 1).date()),
)
def test_the_fast_arithmetic_is_the_tables_own(
    which: int, prompt: int, completion: int, cached_share: float, written_share: float, day: Any
) -> None:
    """Ingest prices a call without the table's general (slow) calculation; for every
    model it must give the table's answer."""
    provider, model = _TABLE_MODELS[which]
    cached = int(prompt * cached_share)
    written = int((prompt - cached) * written_share)
    at = datetime(day.year, day.month, day.day, tzinfo=UTC)
    price = model.get_prices(at)
    ours = call_cost(price, Tokens(prompt, completion, cached, written))
    usage = {"input_tokens": prompt, "output_tokens": completion}
    usage |= {"cache_read_tokens": cached} if cached else {}
    usage |= {"cache_write_tokens": written} if written else {}
    try:
        theirs = float(price.calc_price(genai_prices.Usage(**usage))["total_price"])
    except ValueError:
        assert ours is None, (provider, model.id)
        return
    assert ours == pytest.approx(theirs, rel=1e-9, abs=1e-12), (provider, model.id)


@pytest.mark.parametrize("tokens", [Tokens(12_000, 800, 3_000, 1_000), Tokens(300_000, 5_000, 20_000, 0)])
def test_the_fast_arithmetic_is_the_tables_own_on_every_model(tokens: Tokens) -> None:
    at = datetime(2026, 11, 1, tzinfo=UTC)
    for provider, model in _TABLE_MODELS:
        price = model.get_prices(at)
        usage = {"input_tokens": tokens.prompt, "output_tokens": tokens.completion}
        usage |= {"cache_read_tokens": tokens.cached} if tokens.cached else {}
        usage |= {"cache_write_tokens": tokens.cache_write} if tokens.cache_write else {}
        ours = call_cost(price, tokens)
        try:
            theirs = float(price.calc_price(genai_prices.Usage(**usage))["total_price"])
        except ValueError:
            assert ours is None, (provider, model.id)
            continue
        assert ours == pytest.approx(theirs, rel=1e-9, abs=1e-12), (provider, model.id)
