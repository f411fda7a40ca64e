"""A small, deterministic usage data set with every pattern the analyst looks for, and the
answers to its questions computed here from the raw rows, in plain Python, without the
tools' code: sums, exact percentiles (``statistics.quantiles(method="inclusive")``, the
same definition as ClickHouse's ``quantileExactInclusive``), and each tool's documented
method (docs/analyst.md) re-derived from the price catalogue's numbers."""

from __future__ import annotations

import hashlib
import math
import random
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import genai_prices

from apex_contracts.pricing import PriceCatalogue

START = datetime(2026, 1, 1, tzinfo=UTC)
DAYS = 21
MONTH = 30


@dataclass(frozen=True)
class Pattern:
    workload: str
    provider: str
    model: str
    per_day: int
    hours: tuple[int, int]
    prompt: int
    completion: int
    latency: int
    repeat: float
    errors: float
    outliers: float = 0.0


PATTERNS = (
    Pattern("support-chat", "openai", "gpt-4o", 12, (8, 20), 1500, 200, 1200, 0.3, 0.05),
    Pattern("classifier", "openai", "gpt-4o-mini", 14, (7, 22), 500, 10, 300, 0.5, 0.02),
    Pattern("nightly-report", "anthropic", "claude-sonnet-4", 4, (1, 4), 8000, 800, 9000, 0.0, 0.0),
    Pattern("code-review", "anthropic", "claude-opus-4-1", 3, (9, 18), 12000, 1200, 20000, 0.0, 0.1, 0.15),
    Pattern("rag", "google", "gemini-2.5-flash", 8, (8, 20), 4000, 300, 1800, 0.1, 0.0, 0.1),
    Pattern("extraction", "mistral", "mistral-large", 5, (0, 5), 2000, 300, 2500, 0.0, 0.05),
    Pattern("fine-tuned", "acme", "acme-ft-1", 2, (10, 16), 700, 100, 900, 0.0, 0.0),
)


def rows(
    seed: int = 11, *, latency: bool = True, start: datetime = START, days: int = DAYS
) -> list[dict[str, Any]]:
    """The upload: one dict per call, as a user would send it (growing ~2 % a day)."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for day in range(days):
        for p in PATTERNS:
            for n in range(round(p.per_day * (1 + 0.02 * day))):
                out.append(_row(rng, p, start + timedelta(days=day), day, n, latency))
    return out


def _row(rng: random.Random, p: Pattern, date: datetime, day: int, n: int, latency: bool) -> dict[str, Any]:
    repeated = rng.random() < p.repeat
    template = rng.randrange(4)
    prompt = p.prompt + (template * 37 if repeated else rng.randrange(-p.prompt // 3, p.prompt // 3))
    if rng.random() < p.outliers:
        prompt *= 6
    roll = rng.random()
    status = "ok"
    if roll < p.errors:
        status = ("error", "rate_limited", "timeout")[n % 3]
    row: dict[str, Any] = {
        "ts": (date + timedelta(hours=rng.randrange(*p.hours), minutes=rng.randrange(60))).isoformat(),
        "provider": p.provider,
        "model": p.model,
        "workload": p.workload,
        "prompt_tokens": prompt,
        "completion_tokens": 0 if status != "ok" else p.completion + rng.randrange(p.completion // 2),
        "cached_tokens": prompt // 2 if repeated and p.provider == "openai" and rng.random() < 0.5 else 0,
        "status": status,
        "prompt_hash": hashlib.sha256(
            f"{p.workload}:{template if repeated else (day, n)}".encode()
        ).hexdigest()[:24],
        "request_id": f"{p.workload}-{day}-{n}",
    }
    if latency:
        row["latency_ms"] = p.latency + rng.randrange(p.latency)
    if p.provider == "acme":
        row["cost_usd"] = round(0.001 + rng.random() / 100, 6)
    return row


# --- independent arithmetic ------------------------------------------------------------


def price_of(provider: str, model: str, catalogue: PriceCatalogue | None = None) -> dict[str, Any] | None:
    entry = (catalogue or PriceCatalogue.default()).find(provider, model)
    return None if entry is None else entry.model_dump()


def list_cost(price: dict[str, Any], prompt: int, cached: int, completion: int) -> float:
    cached_price = price["input"] if price["cached_input"] is None else price["cached_input"]
    return ((prompt - cached) * price["input"] + cached * cached_price + completion * price["output"]) / 1e6


def cost(row: dict[str, Any], catalogue: PriceCatalogue | None = None) -> float:
    """What a row costs: as uploaded, else at a tenant's override (``catalogue``), else
    the price table's own calculation at the row's moment (genai-prices, not Apex's code)."""
    if row.get("cost_usd") is not None:
        return float(row["cost_usd"])
    price = price_of(row["provider"], row["model"], catalogue) if catalogue else None
    if price is not None and price["source"] == "tenant override":
        return list_cost(price, row["prompt_tokens"], row.get("cached_tokens") or 0, row["completion_tokens"])
    usage = genai_prices.Usage(
        input_tokens=row["prompt_tokens"],
        cache_read_tokens=row.get("cached_tokens") or 0,
        output_tokens=row["completion_tokens"],
    )
    try:
        priced = genai_prices.calc_price(
            usage,
            row["model"],
            provider_id=row["provider"],
            genai_request_timestamp=datetime.fromisoformat(row["ts"]),
        )
    except LookupError:
        return 0.0
    return float(priced.total_price)


def group(data: Iterable[dict[str, Any]], *fields: str) -> dict[tuple[Any, ...], list[dict[str, Any]]]:
    out: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for row in data:
        out[tuple(row.get(f) for f in fields)].append(row)
    return out


def pct(values: list[float], level: int) -> float:
    """The level-th percentile, inclusive linear interpolation."""
    if len(values) == 1:
        return float(values[0])
    return statistics.quantiles(sorted(values), n=100, method="inclusive")[level - 1]


def span_days(data: list[dict[str, Any]]) -> float:
    moments = [datetime.fromisoformat(r["ts"]) for r in data]
    return max(1.0, (max(moments) - min(moments)).total_seconds() / 86_400)


def monthly(amount: float, days: float) -> float:
    return amount * MONTH / days


def cents(value: float) -> float:
    return round(value + 0.0, 2)


def total(data: Iterable[dict[str, Any]], fn: Callable[[dict[str, Any]], float]) -> float:
    return sum(fn(r) for r in data)


def median(values: list[float]) -> float:
    return pct(values, 50)


def floor(value: float) -> int:
    return math.floor(value)
