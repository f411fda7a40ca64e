"""The response validator: every figure a text states must come from a tool result of
the run. A figure is a number in the text that is not part of a name (``gpt-4o``,
``p95``, ``claude-3-5-haiku``), a date (``2026-01-05``) or a time of day (``06:00``).

A figure with d decimals is supported when some number v in the tool results rounds to
it at d decimals; a percentage also matches a fraction v (0.4123 supports 41.2%). The
tool results' own citations (``queries``) are not evidence of anything."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

_NOISE = re.compile(
    r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?|\b\d{1,2}:\d{2}\b"
)
_NUMBER = re.compile(
    r"(?<![\w.\-/$])(?P<sign>[-−+]?)(?P<dollar>\$?)(?P<int>\d{1,3}(?:,\d{3})+|\d+)(?P<frac>\.\d+)?(?P<pct>\s?%)?"
)
_NAME_TAIL = re.compile(r"[\w\-]")
_IGNORED_KEYS = frozenset({"queries"})


@dataclass(frozen=True, slots=True)
class Figure:
    text: str
    value: float
    decimals: int
    percent: bool


def figures(text: str) -> list[Figure]:
    """The figures a text states, in order."""
    cleaned = _NOISE.sub(lambda m: " " * len(m.group(0)), text)
    out: list[Figure] = []
    for match in _NUMBER.finditer(cleaned):
        end = match.end()
        if end < len(cleaned) and _NAME_TAIL.match(cleaned[end]):
            continue  # the start of a name: "4o", "3b"
        digits = match["int"].replace(",", "") + (match["frac"] or "")
        value = float(digits) * (-1 if match["sign"] in ("-", "−") else 1)
        out.append(
            Figure(
                match.group(0).strip(),
                value,
                len(match["frac"] or "") - 1 if match["frac"] else 0,
                bool(match["pct"]),
            )
        )
    return out


def numbers(results: Iterable[Any]) -> list[float]:
    """Every number in the tool results (booleans and citations excluded)."""
    return sorted(set(_walk(list(results))))


def _walk(value: Any) -> Iterator[float]:
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, int | float):
        if math.isfinite(value):
            yield float(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            if key not in _IGNORED_KEYS:
                yield from _walk(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _walk(item)


def supported(figure: Figure, known: list[float]) -> bool:
    candidates = known
    if figure.percent:
        candidates = known + [v * 100 for v in known if -10 <= v <= 10]
    scale = 10**figure.decimals
    return any(abs(round(v * scale) - round(figure.value * scale)) == 0 for v in candidates)


def unsupported(text: str, results: Iterable[Any]) -> list[str]:
    """The figures of ``text`` that no tool result supports (empty: the text is valid)."""
    known = numbers(results)
    return [f.text for f in figures(text) if not supported(f, known)]
