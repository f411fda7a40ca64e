"""Realistic, deterministic LLM usage for a demo tenant: several workloads with their own
models, volumes, latency, prompt sizes, repeated prompts, errors and growth, so that the
analyst finds something in each of its analyses: a costly model with a cheaper current
successor, latency-tolerant nightly jobs, repeated prompts, failing calls, oversized
prompts, and a month-on-month growth."""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any


@dataclass(frozen=True)
class Workload:
    name: str
    provider: str
    model: str
    per_day: int
    prompt_tokens: tuple[int, float]  # median, spread (lognormal sigma)
    completion_tokens: tuple[int, float]
    latency_ms: tuple[int, float]
    repeat_share: float  # share of calls that reuse one of a few prompts
    error_share: float
    night_batch: bool = False
    oversized_share: float = 0.0  # calls that stuff far too much context into the prompt


WORKLOADS = (
    Workload("support-chat", "openai", "gpt-4o", 260, (1800, 0.5), (220, 0.6), (1400, 0.45), 0.30, 0.02),
    Workload(
        "ticket-classifier", "openai", "gpt-4o-mini", 420, (600, 0.3), (12, 0.3), (380, 0.35), 0.55, 0.01
    ),
    Workload(
        "doc-summarizer",
        "anthropic",
        "claude-sonnet-4",
        90,
        (9000, 0.6),
        (700, 0.4),
        (9500, 0.4),
        0.05,
        0.03,
        True,
    ),
    Workload(
        "code-review",
        "anthropic",
        "claude-opus-4-1",
        25,
        (14000, 0.5),
        (1500, 0.5),
        (21000, 0.35),
        0.02,
        0.04,
    ),
    Workload(
        "rag-answers",
        "google",
        "gemini-2.5-flash",
        180,
        (4200, 0.4),
        (350, 0.5),
        (1900, 0.4),
        0.15,
        0.02,
        oversized_share=0.04,
    ),
    Workload(
        "lead-extraction",
        "mistral",
        "mistral-large",
        60,
        (2500, 0.4),
        (300, 0.4),
        (2600, 0.4),
        0.10,
        0.05,
        True,
    ),
    Workload("sales-email-drafts", "openai", "gpt-4.1", 70, (2200, 0.4), (450, 0.4), (3100, 0.4), 0.08, 0.12),
)


def _lognormal(rng: random.Random, median: int, sigma: float) -> int:
    return max(1, int(median * math.exp(rng.gauss(0, sigma))))


def generate(days: int = 30, *, end: datetime | None = None, seed: int = 42) -> Iterator[dict[str, Any]]:
    """Usage records for ``days`` days up to ``end``; the same seed gives the same rows."""
    rng = random.Random(seed)
    end = (end or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(days=days)
    for day in range(days):
        date = start + timedelta(days=day)
        growth = 1 + 0.012 * day
        weekend = 0.55 if date.weekday() >= 5 else 1.0
        for wl in WORKLOADS:
            calls = int(wl.per_day * growth * (1.0 if wl.night_batch else weekend) * rng.uniform(0.9, 1.1))
            for n in range(calls):
                hour = rng.choice((1, 2, 3, 4)) if wl.night_batch else int(rng.triangular(7, 22, 14))
                ts = date + timedelta(hours=hour, seconds=rng.randrange(3600))
                if ts >= end:
                    continue
                yield _record(rng, wl, ts, f"{wl.name}-{day}-{n}-{seed}")


def _record(rng: random.Random, wl: Workload, ts: datetime, request_id: str) -> dict[str, Any]:
    repeated = rng.random() < wl.repeat_share
    prompt = _lognormal(rng, *wl.prompt_tokens)
    if rng.random() < wl.oversized_share:
        prompt *= rng.randint(8, 14)  # a whole document pasted in
    prompt_key = f"{wl.name}:template:{rng.randrange(12)}" if repeated else f"{request_id}:unique"
    roll = rng.random()
    status = "ok"
    if roll < wl.error_share * 0.3:
        status = "error"
    elif roll < wl.error_share * 0.8:
        status = "rate_limited"
    elif roll < wl.error_share:
        status = "timeout"
    completion = 0 if status != "ok" else _lognormal(rng, *wl.completion_tokens)
    latency = _lognormal(rng, *wl.latency_ms)
    if status == "timeout":
        latency = 60_000
    return {
        "ts": ts.isoformat(),
        "provider": wl.provider,
        "model": wl.model,
        "workload": wl.name,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "cached_tokens": int(prompt * rng.uniform(0.3, 0.8)) if repeated and wl.provider == "openai" else 0,
        "latency_ms": latency,
        "status": status,
        "prompt_hash": hashlib.sha256(prompt_key.encode()).hexdigest()[:32],
        "request_id": request_id,
    }
