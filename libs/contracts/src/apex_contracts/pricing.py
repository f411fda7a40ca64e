"""Prices: the maintained table (``price_table``, genai-prices) at each call's own moment,
Apex's tier mapping over it (``model_tiers.json``), and tenant overrides on top.

``PriceCatalogue.price(record)`` is the one entry point that prices a usage record: the
tenant's override of the model if any, else the table's price at ``record.ts`` (historic
prices), its long-context band, cache reads and writes at their own prices, and the
record's ``service_tier``: batch, priority and flex at the table's variant where it has
one for that date; a batch call the table has no batch price for gets the provider's
published Batch API discount (``model_tiers.json``); priority or flex without a table
price is priced as standard. A model neither knows is unpriced (``cost_usd`` None).

Tenant overrides (negotiated prices, private or fine-tuned models) live in the NATS
key-value bucket ``KV_PRICE_OVERRIDES`` under the tenant id, as ``TenantPrices``. They are
applied where prices are read (``PriceCatalogue.for_tenant``), so a new override reprices
the tenant's whole history at once; a cost the tenant uploaded (``cost_usd``) is never
repriced.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Literal

from pydantic import Field

from apex_contracts import price_table
from apex_contracts.envelope import Model
from apex_contracts.price_table import PER_TOKENS, TABLE, TableModel, Tokens
from apex_contracts.usage import ServiceTier, UsageRecord

__all__ = [
    "KV_PRICE_OVERRIDES",
    "OVERRIDE",
    "PER_TOKENS",
    "SIMILAR_TIERS",
    "TABLE",
    "ModelPrice",
    "PriceCatalogue",
    "PriceOverride",
    "Priced",
    "TenantPrices",
    "Tier",
]

KV_PRICE_OVERRIDES = "apex_price_overrides"
OVERRIDE = "tenant override"

Tier = Literal["frontier", "mid", "small", "reasoning", "reasoning_small", "code", "custom"]

# A workload on a model of the key tier can move to these tiers with similar capability
# (first) or, with a quality check, one step down (second).
SIMILAR_TIERS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "frontier": (("frontier",), ("mid",)),
    "mid": (("mid",), ("small",)),
    "small": (("small",), ()),
    "reasoning": (("reasoning",), ("reasoning_small",)),
    "reasoning_small": (("reasoning_small",), ()),
    "code": (("code",), ()),
    "custom": ((), ()),
}


class ModelPrice(Model):
    """A model's prices at one moment, USD per million tokens (the first band where the
    table has long-context bands: ``long_context_above`` says where the next starts)."""

    provider: str
    model: str
    aliases: list[str] = []
    tier: Tier = "custom"
    input: float = Field(ge=0)
    cached_input: float | None = Field(default=None, ge=0)
    cache_write: float | None = Field(default=None, ge=0)
    output: float = Field(ge=0)
    batch_discount: float = Field(default=0.0, ge=0, le=1)
    legacy: bool = False
    long_context_above: int | None = None
    source: str = TABLE
    table_model: str | None = None

    @property
    def cached_price(self) -> float:
        """The price of a cache-read input token (the input price when there is no cache)."""
        return self.input if self.cached_input is None else self.cached_input

    @property
    def cache_write_price(self) -> float:
        return self.input if self.cache_write is None else self.cache_write

    def cost_usd(
        self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0, cache_write_tokens: int = 0
    ) -> float:
        """Cost of token totals at the first band (the arithmetic of the savings tools)."""
        cached = min(cached_tokens, prompt_tokens)
        written = min(cache_write_tokens, prompt_tokens - cached)
        return (
            (prompt_tokens - cached - written) * self.input
            + cached * self.cached_price
            + written * self.cache_write_price
            + completion_tokens * self.output
        ) / PER_TOKENS


class PriceOverride(Model):
    """One tenant price: replaces the table's price of (provider, model), or adds one."""

    provider: str = Field(min_length=1, max_length=64)
    model: str = Field(min_length=1, max_length=128)
    aliases: list[str] = Field(default=[], max_length=20)
    tier: Tier | None = None
    input: float = Field(ge=0, le=10_000)
    cached_input: float | None = Field(default=None, ge=0, le=10_000)
    cache_write: float | None = Field(default=None, ge=0, le=10_000)
    output: float = Field(ge=0, le=10_000)
    batch_discount: float | None = Field(default=None, ge=0, le=1)


class TenantPrices(Model):
    """What the tenant set, as stored in ``KV_PRICE_OVERRIDES``."""

    overrides: list[PriceOverride] = Field(default=[], max_length=500)
    updated_at: datetime | None = None
    updated_by: str | None = None


class Priced(Model):
    """The cost of one record and what priced it: ``TABLE``, ``OVERRIDE`` or, when
    nothing could, ``cost_usd`` None and ``source`` "unpriced"."""

    cost_usd: float | None
    source: str


class TierEntry(Model):
    provider: str
    model: str
    aliases: list[str] = []
    tier: Tier = "custom"
    legacy: bool = False


class TierMapping(Model):
    """``model_tiers.json``: Apex's own knowledge over the table."""

    tiers: dict[str, str] = {}
    provider_aliases: dict[str, str] = {}
    table_providers: dict[str, str] = {}
    batch_discount: dict[str, float] = {}
    models: list[TierEntry]


def _match(entries: Sequence[TierEntry | PriceOverride], provider: str, name: str) -> int | None:
    found = _best(entries, provider, name)
    return None if found is None else found[1]


def _best(entries: Sequence[TierEntry | PriceOverride], provider: str, name: str) -> tuple[int, int] | None:
    """(length matched, index) of the entry for ``name``: exact name or alias (the whole
    name), else the longest entry name it starts with (``gpt-4o-2024-08-06`` is
    ``gpt-4o``); the provider's entries first, every entry when it has none."""
    own = [n for n, e in enumerate(entries) if e.provider == provider] or list(range(len(entries)))
    for n in own:
        if name == entries[n].model or name in entries[n].aliases:
            return len(name), n
    best: tuple[int, int] | None = None
    for n in own:
        for known in (entries[n].model, *entries[n].aliases):
            if name.startswith(known) and (best is None or len(known) > best[0]):
                best = (len(known), n)
    return best


class PriceCatalogue:
    """The table, the tier mapping and (for a tenant) its overrides."""

    table = TABLE
    currency = "USD"

    def __init__(self, mapping: TierMapping, overrides: Sequence[PriceOverride] = ()) -> None:
        self.mapping = mapping
        self._resolved: dict[tuple[str, str], _Resolved] = {}
        self._rates: dict[tuple[object, ...], tuple[price_table.Rates, float]] = {}
        self.overrides = [
            o.model_copy(
                update={
                    "provider": self.canonical_provider(o.provider),
                    "model": o.model.strip().lower(),
                    "aliases": [a.strip().lower() for a in o.aliases],
                }
            )
            for o in overrides
        ]

    @classmethod
    @cache
    def default(cls) -> PriceCatalogue:
        text = resources.files("apex_contracts").joinpath("model_tiers.json").read_text()
        return cls(TierMapping.model_validate(json.loads(text)))

    @classmethod
    def for_tenant(cls, prices: TenantPrices | None) -> PriceCatalogue:
        """The default catalogue with the tenant's overrides applied."""
        base = cls.default()
        return base.with_overrides(prices.overrides) if prices and prices.overrides else base

    def with_overrides(self, overrides: Sequence[PriceOverride]) -> PriceCatalogue:
        """Each override replaces the table's price of its model (or adds one); an
        override without a tier or batch discount keeps those of the model it replaces."""
        return PriceCatalogue(self.mapping, [*overrides, *self.overrides])

    def canonical_provider(self, provider: str) -> str:
        provider = provider.strip().lower()
        return self.mapping.provider_aliases.get(provider, provider)

    def _override(self, provider: str, name: str) -> PriceOverride | None:
        """The tenant's override for ``name``, unless the tier mapping knows a more
        specific model (an override of ``gpt-4o`` is not one of ``gpt-4o-mini``)."""
        found = _best(self.overrides, provider, name)
        if found is None:
            return None
        known = _best(self.mapping.models, provider, name)
        return self.overrides[found[1]] if known is None or found[0] >= known[0] else None

    def is_override(self, entry: ModelPrice) -> bool:
        return entry.source == OVERRIDE

    # --- lookups ------------------------------------------------------------------------

    def _tier_entry(self, provider: str, *names: str | None) -> TierEntry | None:
        """The mapping's entry for the first of ``names`` it knows (each also without a
        provider prefix: ``openai/gpt-4o``)."""
        for name in price_table.variants(n for n in names if n):
            if (n := _match(self.mapping.models, provider, name)) is not None:
                return self.mapping.models[n]
        return None

    def _table(self, raw_provider: str, provider: str, name: str) -> TableModel | None:
        entry = self._tier_entry(provider, name)
        providers = (raw_provider, self.mapping.table_providers.get(provider, provider))
        refs = (name, *((entry.model, *entry.aliases) if entry else ()))
        return price_table.lookup(providers, refs)

    def find(self, provider: str, model: str, at: datetime | None = None) -> ModelPrice | None:
        """The model's prices at ``at`` (now by default): the tenant's override, else the
        table's; None when neither knows the model."""
        raw = provider.strip().lower()
        canonical = self.canonical_provider(raw)
        name = model.strip().lower()
        entry = self._tier_entry(canonical, name)
        if (override := self._override(canonical, name)) is not None:
            return self._overridden(override, entry)
        found = self._table(raw, canonical, name)
        if found is None:
            return None
        entry = entry or self._tier_entry(canonical, found.model_id)
        return self._from_table(found, canonical, name, entry, at or datetime.now(UTC))

    def _overridden(self, o: PriceOverride, entry: TierEntry | None) -> ModelPrice:
        return ModelPrice(
            provider=o.provider,
            model=o.model,
            aliases=o.aliases or (entry.aliases if entry else []),
            tier=o.tier or (entry.tier if entry else "custom"),
            input=o.input,
            cached_input=o.cached_input,
            cache_write=o.cache_write,
            output=o.output,
            batch_discount=o.batch_discount
            if o.batch_discount is not None
            else self.mapping.batch_discount.get(o.provider, 0.0),
            legacy=entry.legacy if entry else False,
            source=OVERRIDE,
        )

    def _from_table(
        self, found: TableModel, provider: str, name: str, entry: TierEntry | None, at: datetime
    ) -> ModelPrice:
        prices = found.prices(at)
        return ModelPrice(
            provider=provider,
            model=entry.model if entry else name,
            aliases=entry.aliases if entry else [],
            tier=entry.tier if entry else "custom",
            input=price_table.base(prices.input_mtok) or 0.0,
            cached_input=price_table.base(prices.cache_read_mtok),
            cache_write=price_table.base(prices.cache_write_mtok),
            output=price_table.base(prices.output_mtok) or 0.0,
            batch_discount=self._batch_discount(found, provider, at),
            legacy=entry.legacy if entry else False,
            long_context_above=price_table.band_start(prices),
            table_model=found.model_id,
        )

    def _batch_discount(self, found: TableModel, provider: str, at: datetime) -> float:
        standard = found.prices(at)
        batch = found.prices(at, {"processing": "batch"})
        full, half = price_table.base(standard.input_mtok), price_table.base(batch.input_mtok)
        if batch != standard and full and half is not None:
            return round(1 - half / full, 4)
        return self.mapping.batch_discount.get(provider, 0.0)

    # --- costs --------------------------------------------------------------------------

    def price(self, record: UsageRecord) -> Priced:
        """The list cost of one usage record at its own moment (``cost_usd`` as uploaded
        is not consulted here: the caller keeps an uploaded cost)."""
        tokens = Tokens(
            record.prompt_tokens,
            record.completion_tokens,
            record.cached_tokens or 0,
            record.cache_write_tokens or 0,
        )
        return self.price_tokens(record.provider, record.model, tokens, record.ts, record.service_tier)

    def price_tokens(
        self,
        provider: str,
        model: str,
        tokens: Tokens,
        at: datetime | None = None,
        service_tier: ServiceTier | None = None,
    ) -> Priced:
        cost = (tariff := self.tariff(provider, model, at, service_tier)).cost(tokens)
        return Priced(cost_usd=cost, source=tariff.source if cost is not None else "unpriced")

    def tariff(
        self, provider: str, model: str, at: datetime | None = None, service_tier: ServiceTier | None = None
    ) -> price_table.Tariff:
        """What prices a call of the model at ``at`` (now) for the tier."""
        at = at or datetime.now(UTC)
        resolved = self._resolve(provider, model)
        if (entry := resolved.override) is not None:
            discount = entry.batch_discount if service_tier == "batch" else 0.0

            def own(tokens: Tokens) -> float:
                cost = entry.cost_usd(tokens.prompt, tokens.completion, tokens.cached, tokens.cache_write)
                return cost * (1 - discount) if discount else cost

            return price_table.Tariff(OVERRIDE, daily=True, own=own)
        if (found := resolved.table) is None:
            return price_table.Tariff("unpriced", daily=True)
        rates, factor = self._rates_at(provider, model, resolved, found, at, service_tier)
        return price_table.Tariff(TABLE, daily=not resolved.by_time_of_day, rates=rates, factor=factor)

    def _rates_at(
        self,
        provider: str,
        model: str,
        resolved: _Resolved,
        found: TableModel,
        at: datetime,
        service_tier: ServiceTier | None,
    ) -> tuple[price_table.Rates, float]:
        """The model's rates at ``at`` for the tier, and the factor a batch call the table
        has no batch price for gets (memoised per day: prices change by date, except
        time-of-day prices, memoised per moment)."""
        moment: object = at if resolved.by_time_of_day else at.astimezone(UTC).date()
        key = (provider, model, service_tier, moment)
        if (hit := self._rates.get(key)) is not None:
            return hit
        standard = found.prices(at)
        context = _context(service_tier)
        variant = found.prices(at, context) if context else standard
        factor = 1.0
        if service_tier == "batch" and variant == standard:
            factor = 1 - self.mapping.batch_discount.get(resolved.provider, 0.0)
        result = (price_table.rates(variant), factor)
        if len(self._rates) < 100_000:
            self._rates[key] = result
        return result

    def _resolve(self, provider: str, model: str) -> _Resolved:
        """What prices (provider, model): the override or the table's model (memoised: ingest
        prices many records of few models)."""
        key = (provider, model)
        if (hit := self._resolved.get(key)) is not None:
            return hit
        raw = provider.strip().lower()
        canonical = self.canonical_provider(raw)
        name = model.strip().lower()
        override = self._override(canonical, name)
        table = None if override else self._table(raw, canonical, name)
        resolved = _Resolved(
            canonical,
            self._overridden(override, self._tier_entry(canonical, name)) if override else None,
            table,
            table is not None and table.by_time_of_day,
        )
        if len(self._resolved) < 100_000:
            self._resolved[key] = resolved
        return resolved

    def cost_usd(
        self,
        provider: str,
        model: str,
        prompt_tokens: int,
        completion_tokens: int,
        cached_tokens: int = 0,
        cache_write_tokens: int = 0,
        at: datetime | None = None,
    ) -> float | None:
        """List-price cost of one call; None when the model is unpriced."""
        tokens = Tokens(prompt_tokens, completion_tokens, cached_tokens, cache_write_tokens)
        return self.price_tokens(provider, model, tokens, at).cost_usd

    # --- the tier mapping's models --------------------------------------------------------

    def models(self, at: datetime | None = None) -> list[ModelPrice]:
        """Every model of the tier mapping and every override, at ``at`` (now)."""
        out: dict[tuple[str, str], ModelPrice] = {}
        for o in self.overrides:
            out.setdefault((o.provider, o.model), self._overridden(o, self._tier_entry(o.provider, o.model)))
        for e in self.mapping.models:
            if (e.provider, e.model) not in out and (price := self.find(e.provider, e.model, at)) is not None:
                out[(e.provider, e.model)] = price
        return list(out.values())

    def names(self) -> set[str]:
        """The model names of the tier mapping and the overrides (what a question may name)."""
        return {e.model for e in self.mapping.models} | {o.model for o in self.overrides}

    def alternatives(self, entry: ModelPrice, at: datetime | None = None) -> list[tuple[ModelPrice, bool]]:
        """Current (non-legacy) models of the same provider a workload on ``entry`` could
        move to: (model, similar) where ``similar`` is True for the same tier and False
        for one tier down (quality must be checked)."""
        same, lower = SIMILAR_TIERS.get(entry.tier, ((), ()))
        out: list[tuple[ModelPrice, bool]] = []
        for other in self.models(at):
            if other.provider != entry.provider or other.legacy or other.model == entry.model:
                continue
            if other.tier in same:
                out.append((other, True))
            elif other.tier in lower:
                out.append((other, False))
        return out


@dataclass(frozen=True, slots=True)
class _Resolved:
    provider: str
    override: ModelPrice | None
    table: TableModel | None
    by_time_of_day: bool


def _context(service_tier: ServiceTier | None) -> dict[str, str] | None:
    if service_tier == "batch":
        return {"processing": "batch"}
    if service_tier in ("priority", "flex"):
        return {"service_tier": service_tier}
    return None
