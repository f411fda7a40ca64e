"""The price catalogue: public list prices per model, dated, with tenant overrides.

``PriceCatalogue.default()`` reads ``prices.json`` (shipped with this package). A model is
found by exact name, then alias, then the longest catalogue name it starts with, so
``gpt-4o-2024-08-06`` prices as ``gpt-4o``. Cost of a call = uncached input + cached input
(at the cached price, or the input price when the model has none) + output.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from pydantic import Field

from apex_contracts.envelope import Model

PER_TOKENS = 1_000_000


class ModelPrice(Model):
    provider: str
    model: str
    aliases: list[str] = []
    tier: str
    input: float = Field(ge=0)
    cached_input: float | None = Field(default=None, ge=0)
    output: float = Field(ge=0)
    batch_discount: float = Field(default=0.0, ge=0, le=1)

    def cost_usd(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> float:
        cached = min(cached_tokens, prompt_tokens)
        cached_price = self.input if self.cached_input is None else self.cached_input
        return (
            (prompt_tokens - cached) * self.input
            + cached * cached_price
            + completion_tokens * self.output
        ) / PER_TOKENS


class PriceCatalogue(Model):
    as_of: str
    currency: str = "USD"
    provider_aliases: dict[str, str] = {}
    models: list[ModelPrice]

    @classmethod
    @cache
    def default(cls) -> PriceCatalogue:
        text = resources.files("apex_contracts").joinpath("prices.json").read_text()
        return cls.model_validate(json.loads(text))

    def with_overrides(self, overrides: list[dict[str, Any]]) -> PriceCatalogue:
        """A catalogue where each override replaces (or adds) the entry for its model."""
        replaced = {(o["provider"], o["model"]) for o in overrides}
        kept = [m for m in self.models if (m.provider, m.model) not in replaced]
        return self.model_copy(
            update={"models": kept + [ModelPrice.model_validate(o) for o in overrides]}
        )

    def canonical_provider(self, provider: str) -> str:
        provider = provider.strip().lower()
        return self.provider_aliases.get(provider, provider)

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
        self, provider: str, model: str, prompt_tokens: int, completion_tokens: int,
        cached_tokens: int = 0,
    ) -> float | None:
        """List-price cost of one call; None when the model is not in the catalogue."""
        entry = self.find(provider, model)
        if entry is None:
            return None
        return entry.cost_usd(prompt_tokens, completion_tokens, cached_tokens)
