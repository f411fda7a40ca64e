"""The maintained price table (``genai-prices``, pinned): finding a model in it and the
cost of one call at the call's own moment.

The table knows ~2,300 models of ~47 providers with their price history (a price has a
start date), long-context bands (past a number of input tokens every token of the call
costs the band's price), cache-read and cache-write prices, and batch / priority / flex
variants. Apex uses it offline, as shipped in the pinned package: ``TABLE`` names the
version, and every cost a report states names it.

A name is looked up as sent (the table knows dated names such as ``gpt-4o-2024-08-06``
and Bedrock ids such as ``us.anthropic.claude-…-v2:0``), then without a provider prefix
(``openai/gpt-4o``, ``models/gemini-2.5-flash``), then by Apex's own aliases
(``model_tiers.json``). A provider the table does not know lets the table guess it from
the model name; a model it does not know is unpriced (``None``), never $0.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import cache, lru_cache
from typing import Any

import genai_prices
from genai_prices import types as gp
from genai_prices.data_snapshot import get_snapshot

TABLE = f"genai-prices {genai_prices.__version__}"
PER_TOKENS = 1_000_000
# Price keys the fast arithmetic below computes exactly for the usage Apex records (text
# tokens: input with cache reads and writes inside it, output), and keys of units Apex
# never records (audio, images, video, pages, searches: zero of them). A model priced by
# any other key (characters, separately priced reasoning or citations) is priced by the
# table's own, slower calculation. The test checks both agree on every model of the table.
_FAST_KEYS = frozenset(
    {
        "input_mtok",
        "output_mtok",
        "cache_read_mtok",
        "cache_write_mtok",
        "cache_write_1h_mtok",
        "requests_kcount",
        "web_searches_kcount",
        "storage_searches_kcount",
        "input_audio_mtok",
        "output_audio_mtok",
        "cache_audio_read_mtok",
        "audio_hours",
        "input_audio_hours",
        "input_image_mtok",
        "output_image_mtok",
        "cache_image_read_mtok",
        "input_video_mtok",
        "output_video_mtok",
        "input_document_kpages",
        "input_annotated_document_kpages",
        "input_text_messages_kcount",
    }
)
_PREFIXES = ("models/",)

Price = Decimal | gp.TieredPrices


@dataclass(frozen=True, slots=True)
class TableModel:
    provider_id: str
    model_id: str
    info: gp.ModelInfo

    def prices(self, at: datetime, context: Mapping[str, str] | None = None) -> gp.ModelPrice:
        return self.info.get_prices(at, context)

    @property
    def by_time_of_day(self) -> bool:
        """Whether a price depends on the time of day (off-peak prices), not only the date."""
        constraints = [c.constraint for c in self.info.prices] if isinstance(self.info.prices, list) else []
        constraints += [v.constraint for v in self.info.price_variants or ()]
        return any(isinstance(c, gp.TimeOfDateConstraint) for c in constraints)


Rate = tuple[float, tuple[tuple[int, float], ...]]  # the first band's price, then (start, price) bands


@dataclass(frozen=True, slots=True)
class Rates:
    """A model's token prices at one moment, ready for arithmetic (USD per million tokens)."""

    input: Rate
    cache_read: Rate | None
    cache_write: Rate | None
    output: Rate
    per_request: float
    exact: bool  # False: only the table's own calculation prices this model right
    price: gp.ModelPrice


def _as_rate(price: Price | None) -> Rate | None:
    if price is None:
        return None
    if isinstance(price, gp.TieredPrices):
        return float(price.base), tuple((t.start, float(t.price)) for t in price.tiers)
    return float(price), ()


def rates(price: gp.ModelPrice) -> Rates:
    per_request = price.requests_kcount
    return Rates(
        input=_as_rate(price.input_mtok) or (0.0, ()),  # no input price: the table's "free"
        cache_read=_as_rate(price.cache_read_mtok),
        cache_write=_as_rate(price.cache_write_mtok),
        output=_as_rate(price.output_mtok) or (0.0, ()),
        per_request=float(per_request) / 1000 if isinstance(per_request, Decimal) else 0.0,
        exact=_keys(price) <= _FAST_KEYS,
        price=price,
    )


def _band(rate: Rate, total_input: int) -> float:
    for start, price in reversed(rate[1]):
        if total_input > start:
            return price
    return rate[0]


def rates_cost(r: Rates, tokens: Tokens) -> float | None:
    """The cost of one call at ``r`` (USD); None when the table cannot price it."""
    if not r.exact:
        return _table_cost(r.price, tokens)
    total = tokens.prompt
    input_rate = _band(r.input, total)
    cached = min(tokens.cached, tokens.prompt)
    written = min(tokens.cache_write, tokens.prompt - cached)
    read_rate = input_rate if r.cache_read is None else _band(r.cache_read, total)
    write_rate = input_rate if r.cache_write is None else _band(r.cache_write, total)
    amount = (
        (tokens.prompt - cached - written) * input_rate
        + cached * read_rate
        + written * write_rate
        + tokens.completion * _band(r.output, total)
    ) / PER_TOKENS
    return amount + r.per_request


@dataclass(frozen=True, slots=True)
class Tokens:
    """One call's tokens, Apex's convention: ``prompt`` counts every input token, cache
    reads (``cached``) and cache writes (``cache_write``) included."""

    prompt: int
    completion: int
    cached: int = 0
    cache_write: int = 0


@dataclass(frozen=True, slots=True)
class Tariff:
    """What prices a call of one model at one moment for one service tier: a tenant's
    override (``own``), the table's ``rates`` times ``factor``, or nothing. ``daily``:
    the same tariff holds for the whole UTC day (False for time-of-day prices), so a
    batch of records may price a day's calls with one."""

    source: str
    daily: bool
    rates: Rates | None = None
    factor: float = 1.0
    own: Callable[[Tokens], float] | None = None

    def cost(self, tokens: Tokens) -> float | None:
        """The call's cost (USD), None when nothing prices it."""
        if self.own is not None:
            return self.own(tokens)
        listed = rates_cost(self.rates, tokens) if self.rates is not None else None
        return None if listed is None else listed * self.factor


def load() -> None:
    """Reads the bundled price table now (about a quarter of a second of CPU): a service
    that prices calls it as it starts, so that its first run does not stall every run
    beside it while the table loads."""
    get_snapshot()


@cache
def models_in_table() -> int:
    return sum(len(p.models) for p in get_snapshot().providers)


@cache
def providers_in_table() -> int:
    return len(get_snapshot().providers)


def _knows_provider(provider_id: str) -> bool:
    try:
        get_snapshot().find_provider(None, provider_id, None)
    except LookupError:
        return False
    return True


@lru_cache(maxsize=8192)
def lookup(providers: tuple[str, ...], refs: tuple[str, ...]) -> TableModel | None:
    """The first (provider, name) pair the table knows; the table guesses the provider
    from the name when none of ``providers`` is one it knows."""
    snapshot = get_snapshot()
    known: list[str | None] = [p for p in dict.fromkeys(providers) if p and _knows_provider(p)]
    names = list(dict.fromkeys(variants(refs)))
    for name in names:
        for provider_id in known or [None]:
            try:
                provider, info = snapshot.find_provider_model(name, None, provider_id, None)
            except LookupError:
                continue
            return TableModel(provider.id, info.id, info)
    return None


def variants(refs: Iterable[str]) -> Iterable[str]:
    """Each name, then without its provider prefix (``openai/gpt-4o``, ``models/…``)."""
    for ref in refs:
        name = ref.strip().lower()
        if not name:
            continue
        yield name
        for prefix in _PREFIXES:
            if name.startswith(prefix):
                yield name[len(prefix) :]
        if "/" in name:
            yield name.split("/", 1)[1]


def base(price: Price | None) -> float | None:
    """The price of the first band (the one almost every call pays)."""
    if price is None:
        return None
    return float(price.base if isinstance(price, gp.TieredPrices) else price)


def band_start(price: gp.ModelPrice) -> int | None:
    """Input tokens above which a call pays a higher (long-context) band, if any."""
    starts = [
        tier.start
        for key in ("input_mtok", "output_mtok")
        if isinstance(value := getattr(price, key), gp.TieredPrices)
        for tier in value.tiers
    ]
    return min(starts) if starts else None


def _keys(price: gp.ModelPrice) -> set[str]:
    return {k for k, v in price.__dict__.items() if v is not None and not k.startswith("_")}


def call_cost(price: gp.ModelPrice, tokens: Tokens) -> float | None:
    """The cost of one call at ``price`` (USD); None when the table cannot price it."""
    return rates_cost(rates(price), tokens)


def _table_cost(price: gp.ModelPrice, tokens: Tokens) -> float | None:
    usage: dict[str, Any] = {"input_tokens": tokens.prompt, "output_tokens": tokens.completion}
    if tokens.cached:
        usage["cache_read_tokens"] = tokens.cached
    if tokens.cache_write:
        usage["cache_write_tokens"] = tokens.cache_write
    try:
        return float(price.calc_price(gp.Usage(**usage))["total_price"])
    except ValueError:
        # a model priced only by units Apex does not record (audio seconds, images...)
        return None
