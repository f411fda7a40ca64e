"""The price catalogue: public list prices per model, dated, with tenant overrides.

``PriceCatalogue.default()`` reads ``prices.json`` (shipped with this package). A model is
found by exact name, then alias, then the longest catalogue name it starts with, so
``gpt-4o-2024-08-06`` prices as ``gpt-4o``. Cost of a call = uncached input + cached input
(at the cached price, or the input price when the model has none) + output.

Tenant overrides (negotiated prices, private or fine-tuned models) live in the NATS
key-value bucket ``KV_PRICE_OVERRIDES`` under the tenant id, as ``TenantPrices``. They are
applied where prices are read (``PriceCatalogue.for_tenant``), so a new override reprices
the tenant's whole history at once; a cost the tenant uploaded (``cost_usd``) is never
repriced.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Literal

from pydantic import Field

from apex_contracts.envelope import Model

PER_TOKENS = 1_000_000
KV_PRICE_OVERRIDES = "apex_price_overrides"

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
    provider: str
    model: str
    aliases: list[str] = []
    tier: Tier = "custom"
    input: float = Field(ge=0)
    cached_input: float | None = Field(default=None, ge=0)
    output: float = Field(ge=0)
    batch_discount: float = Field(default=0.0, ge=0, le=1)
    legacy: bool = False

    @property
    def cached_price(self) -> float:
        """The price of a cache-read input token (the input price when there is no cache)."""
        return self.input if self.cached_input is None else self.cached_input

    def cost_usd(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> float:
        cached = min(cached_tokens, prompt_tokens)
        return (
            (prompt_tokens - cached) * self.input
            + cached * self.cached_price
            + completion_tokens * self.output
        ) / PER_TOKENS


class PriceOverride(Model):
    """One tenant price: replaces the catalogue entry of (provider, model), or adds one."""

    provider: str = Field(min_length=1, max_length=64)
    model: str = Field(min_length=1, max_length=128)
    aliases: list[str] = Field(default=[], max_length=20)
    tier: Tier | None = None
    input: float = Field(ge=0, le=10_000)
    cached_input: float | None = Field(default=None, ge=0, le=10_000)
    output: float = Field(ge=0, le=10_000)
    batch_discount: float | None = Field(default=None, ge=0, le=1)


class TenantPrices(Model):
    """What the tenant set, as stored in ``KV_PRICE_OVERRIDES``."""

    overrides: list[PriceOverride] = Field(default=[], max_length=500)
    updated_at: datetime | None = None
    updated_by: str | None = None


class PriceCatalogue(Model):
    as_of: str
    currency: str = "USD"
    provider_aliases: dict[str, str] = {}
    models: list[ModelPrice]
    overridden: list[tuple[str, str]] = []

    @classmethod
    @cache
    def default(cls) -> PriceCatalogue:
        text = resources.files("apex_contracts").joinpath("prices.json").read_text()
        return cls.model_validate(json.loads(text))

    @classmethod
    def for_tenant(cls, prices: TenantPrices | None) -> PriceCatalogue:
        """The default catalogue with the tenant's overrides applied."""
        base = cls.default()
        return base.with_overrides(prices.overrides) if prices and prices.overrides else base

    def with_overrides(self, overrides: list[PriceOverride]) -> PriceCatalogue:
        """A catalogue where each override replaces (or adds) the entry for its model; an
        override without a tier or batch discount keeps those of the entry it replaces."""
        replaced: dict[tuple[str, str], ModelPrice] = {}
        for override in overrides:
            key = (self.canonical_provider(override.provider), override.model.strip().lower())
            previous = self._exact(*key)
            replaced[key] = ModelPrice(
                provider=key[0],
                model=key[1],
                aliases=[a.strip().lower() for a in override.aliases]
                or (previous.aliases if previous else []),
                tier=override.tier or (previous.tier if previous else "custom"),
                input=override.input,
                cached_input=override.cached_input,
                output=override.output,
                batch_discount=override.batch_discount
                if override.batch_discount is not None
                else (previous.batch_discount if previous else 0.0),
            )
        kept = [m for m in self.models if (m.provider, m.model) not in replaced]
        return self.model_copy(
            update={
                "models": list(replaced.values()) + kept,
                "overridden": sorted(set(self.overridden) | set(replaced)),
            }
        )

    def is_override(self, entry: ModelPrice) -> bool:
        return (entry.provider, entry.model) in self.overridden

    def canonical_provider(self, provider: str) -> str:
        provider = provider.strip().lower()
        return self.provider_aliases.get(provider, provider)

    def _exact(self, provider: str, model: str) -> ModelPrice | None:
        return next((m for m in self.models if m.provider == provider and m.model == model), None)

    def find(self, provider: str, model: str) -> ModelPrice | None:
        provider = self.canonical_provider(provider)
        name = model.strip().lower()
        candidates = [m for m in self.models if m.provider == provider] or self.models
        for entry in candidates:
            if name == entry.model or name in entry.aliases:
                return entry
        best: tuple[int, ModelPrice] | None = None
        for entry in candidates:
            for known in (entry.model, *entry.aliases):
                if name.startswith(known) and (best is None or len(known) > best[0]):
                    best = (len(known), entry)
        return best[1] if best else None

    def cost_usd(
        self,
        provider: str,
        model: str,
        prompt_tokens: int,
        completion_tokens: int,
        cached_tokens: int = 0,
    ) -> float | None:
        """List-price cost of one call; None when the model is not in the catalogue."""
        entry = self.find(provider, model)
        if entry is None:
            return None
        return entry.cost_usd(prompt_tokens, completion_tokens, cached_tokens)

    def alternatives(self, entry: ModelPrice) -> list[tuple[ModelPrice, bool]]:
        """Current (non-legacy) models of the same provider a workload on ``entry`` could
        move to: (model, similar) where ``similar`` is True for the same tier and False
        for one tier down (quality must be checked)."""
        same, lower = SIMILAR_TIERS.get(entry.tier, ((), ()))
        out: list[tuple[ModelPrice, bool]] = []
        for other in self.models:
            if other.provider != entry.provider or other.legacy or other.model == entry.model:
                continue
            if other.tier in same:
                out.append((other, True))
            elif other.tier in lower:
                out.append((other, False))
        return out
