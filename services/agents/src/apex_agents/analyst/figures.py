"""The response validator: every number a text states must be one of the report's figures
(``apex_contracts.figures``) with the same value, the measure the text gives it and the
entity the text puts it on.

A stated number is a number that is not part of a name (``gpt-4o``, ``p95``), a date
(``2026-01-05``) or a time of day (``06:00``). Its kind comes from how it is written:
money (``$``), a percentage (``%``), milliseconds (``ms``) or a count. Its value matches a
figure at the text's precision (a ratio 0.4123 supports "41.2%").

**Measure.** The words of its clause say what a number measures: the nearest keyword
that fits its kind (``saves``/``less`` a saving, ``costs``/``spend`` a cost, ``share``/
``of spend`` a share, ``requests``/``calls`` requests, ``failed calls``/``calls … failed``
failed calls or an error rate, ``tokens``, ``per million tokens`` a price, ``growth``/
``trend``); in a markdown table, the column's header. With no such word, any measure of
the right kind will do.

**Entity.** The models, workloads and providers the clause names (the table row, else
the sentence, else its paragraph): a figure about a model or workload must be about one
of them; a whole-period figure fits a clause that names none, or says "total"/"overall".
A clause that names nothing cannot contradict an entity."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from apex_contracts.figures import MONEY_UNITS, Figure

_NOISE = re.compile(
    r"\b\d+\.\d+\.\d+\b|"  # a version (genai-prices 0.2.3)
    r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?|\b\d{1,2}:\d{2}\b"
)
_NUMBER = re.compile(
    r"(?<![\w.\-/$])(?P<sign>[-−+]?)(?P<dollar>\$?)(?P<int>\d{1,3}(?:,\d{3})+|\d+)(?P<frac>\.\d+)?(?P<pct>\s?%)?"
    r"(?P<ms>\s?ms\b)?"
)
_NAME_TAIL = re.compile(r"[\w\-]")
_SENTENCE = re.compile(r"(?<=[.!?;])\s+|\s+—\s+|\n")
_TOTAL = re.compile(r"\b(total|overall|in all|altogether|across|all (your|models|workloads))\b", re.I)

# Keyword families, longest phrases first; each maps a number's kind to a measure.
_FAMILIES: tuple[tuple[str, str], ...] = (
    (
        "failed",
        r"(?:calls|requests)\b[^.;]{0,30}?\bfail(?:ed|ing|s)?\b|fail(?:ed|ing|s|ures?)?|errors?|timeouts?|rate[ -]limited",
    ),
    ("price", r"per million tokens|per 1m tokens|per mtok"),
    ("saving", r"sav(?:e|es|ing|ings)|cut|cuts|less|cheaper|reduc\w*|lower|discount"),
    ("share", r"share|of (?:your |the )?(?:spend|cost|total|those|calls|requests|traffic)|accounts? for"),
    ("cost", r"cost\w*|spen[dt]\w*|paid|pay\w*|bill\w*|wast\w*"),
    ("growth", r"grow\w*|trend"),
    ("latency", r"latency|p50|p95|p99"),
    ("tokens", r"tokens?"),
    ("requests", r"requests?|calls?|prompts?"),
    ("days", r"days?"),
)
_KEYWORD = re.compile("|".join(f"(?P<{name}>\\b(?:{pattern}))" for name, pattern in _FAMILIES), re.I)
# (family, kind) -> measure
_MEASURE: dict[tuple[str, str], str] = {
    ("failed", "count"): "failed_calls",
    ("failed", "percent"): "error_rate",
    ("price", "money"): "price",
    ("saving", "money"): "saving",
    ("saving", "percent"): "saving",
    ("share", "percent"): "share",
    ("cost", "money"): "cost",
    ("growth", "percent"): "growth",
    ("latency", "ms"): "latency",
    ("latency", "count"): "latency",
    ("tokens", "count"): "tokens",
    ("requests", "count"): "requests",
    ("requests", "percent"): "share",
    ("days", "count"): "days",
}
_UNITS_OF_KIND = {
    "money": MONEY_UNITS,
    "percent": frozenset({"ratio", "percent"}),
    "ms": frozenset({"ms"}),
    "count": frozenset({"count", "tokens", "days", "ms"}),
}


@dataclass(frozen=True, slots=True)
class Stated:
    text: str
    value: float
    decimals: int
    kind: str  # money, percent, ms, count
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Refusal:
    text: str
    reason: str

    def __str__(self) -> str:
        return f"{self.text} ({self.reason})"


def stated(text: str) -> list[Stated]:
    """The numbers a text states, in order."""
    cleaned = _NOISE.sub(lambda m: " " * len(m.group(0)), text)
    out: list[Stated] = []
    for match in _NUMBER.finditer(cleaned):
        end = match.end()
        if end < len(cleaned) and _NAME_TAIL.match(cleaned[end]) and not match["ms"]:
            continue  # the start of a name: "4o", "3b"
        digits = match["int"].replace(",", "") + (match["frac"] or "")
        value = float(digits) * (-1 if match["sign"] in ("-", "−") else 1)
        kind = "money" if match["dollar"] else "percent" if match["pct"] else "ms" if match["ms"] else "count"
        decimals = len(match["frac"]) - 1 if match["frac"] else 0
        number = match.group(0)[: len(match.group(0)) - len(match["ms"] or "")].strip()
        out.append(Stated(number, value, decimals, kind, match.start(), end))
    return out


def check(text: str, figures: list[Figure]) -> list[Refusal]:
    """The numbers of ``text`` no figure supports, each with the reason (empty: valid)."""
    names = _names(figures)
    refused: list[Refusal] = []
    for block in _blocks(text):
        if block.lstrip().startswith("|"):
            refused += _table(block, figures, names)
            continue
        block_names = _named(block, names)
        for clause in _SENTENCE.split(block):
            clause_names = _named(clause, names) or block_names
            for number in stated(clause):
                reason = _refusal(
                    number, _claim(clause, number), clause_names, bool(_TOTAL.search(clause)), figures
                )
                if reason:
                    refused.append(Refusal(number.text, reason))
    return refused


def unsupported(text: str, figures: list[Figure]) -> list[str]:
    """The refused numbers of ``text``, with their reasons, as the rewrite is told them."""
    return [str(r) for r in check(text, figures)]


def _blocks(text: str) -> Iterable[str]:
    """Paragraphs and bullets (a table is one block of ``|`` lines)."""
    block: list[str] = []
    for line in text.splitlines():
        new_item = line.lstrip().startswith(("- ", "* ", "#")) or not line.strip()
        table_edge = bool(block) and block[-1].lstrip().startswith("|") != line.lstrip().startswith("|")
        if block and (new_item or table_edge):
            yield "\n".join(block)
            block = []
        if line.strip():
            block.append(line)
    if block:
        yield "\n".join(block)


def _table(block: str, figures: list[Figure], names: list[str]) -> list[Refusal]:
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in block.splitlines()]
    header, body = rows[0], [r for r in rows[1:] if not all(set(c) <= set("-: ") for c in r)]
    refused = []
    for row in body:
        row_names = _named(" ".join(row), names)
        for column, cell in enumerate(row):
            title = header[column] if column < len(header) else ""
            for number in stated(cell):
                claim = _claim(title, number) or _claim(cell, number)
                reason = _refusal(number, claim, row_names, False, figures)
                if reason:
                    refused.append(Refusal(number.text, reason))
    return refused


def _names(figures: list[Figure]) -> list[str]:
    """Every entity name of the figures, longest first (``gpt-4o-mini`` before ``gpt-4o``)."""
    return sorted({n for f in figures for n in f.entity.names()}, key=len, reverse=True)


def _named(text: str, names: list[str]) -> set[str]:
    found: set[str] = set()
    taken: list[tuple[int, int]] = []
    lowered = text.lower()
    for name in names:
        for match in re.finditer(rf"(?<![\w.\-]){re.escape(name.lower())}(?![\w\-]|\.\w)", lowered):
            if not any(s <= match.start() and match.end() <= e for s, e in taken):
                found.add(name)
                taken.append(match.span())
    return found


def _claim(clause: str, number: Stated) -> str | None:
    """The measure the words nearest to the number give it (None: no word does)."""
    if number.kind == "money" and re.search(_FAMILIES[1][1], clause, re.I):
        return "price"
    if (
        number.kind == "count"
        and re.search(r"\b(?:out )?of\s*$", clause[: number.start])
        and re.match(r"\s*(?:calls|requests)\b", clause[number.end :])
    ):
        return "requests"  # "12 of 300 calls failed": 300 is the calls made
    best: tuple[int, str] | None = None
    for match in _KEYWORD.finditer(clause):
        family = match.lastgroup or ""
        measure = _MEASURE.get((family, number.kind))
        if measure is None:
            continue
        distance = match.start() - number.end if match.start() >= number.end else number.start - match.end()
        if best is None or distance < best[0]:
            best = (distance, measure)
    return best[1] if best else None


def _matches(number: Stated, figure: Figure) -> bool:
    if figure.unit not in _UNITS_OF_KIND[number.kind]:
        return False
    value = figure.value * 100 if figure.unit == "ratio" else figure.value
    scale: int = 10**number.decimals
    return round(value * scale) == round(number.value * scale)


def _refusal(
    number: Stated, claim: str | None, named: set[str], total: bool, figures: list[Figure]
) -> str | None:
    same_value = [f for f in figures if _matches(number, f)]
    if not same_value:
        return "no figure of the report has this value"
    measured = [f for f in same_value if claim is None or f.measure == claim]
    if not measured:
        return f"it is not a {claim} figure (it is {_about(same_value[0])})"
    fitting = [f for f in measured if _fits(f, named, total)]
    if not fitting:
        return f"it is not about {', '.join(sorted(named))} (it is {_about(measured[0])})"
    return None


def _fits(figure: Figure, named: set[str], total: bool) -> bool:
    own = figure.entity.names()
    if not own:
        return not named or total
    return not named or bool(own & named)


def _about(figure: Figure) -> str:
    qualifier = f" ({figure.qualifier})" if figure.qualifier else ""
    return f"the {figure.measure}{qualifier} of {figure.entity.label()}"
