"""The offline planner's reading of a question: intent, time range and models named.
Deterministic rules, so the same question always leads to the same decisions."""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta

from apex_contracts.pricing import PriceCatalogue
from apex_contracts.report import Intent, Period

# Checked in order; the first intent with a matching pattern wins.
_INTENT_PATTERNS: tuple[tuple[Intent, re.Pattern[str]], ...] = (
    ("caching", re.compile(r"\b(cach\w*|repeated prompts?|duplicate prompts?|same prompts?)\b")),
    (
        "forecast",
        re.compile(
            r"\b(forecast\w*|next month|projection|projected|predict\w*|grow\w*|trend\w*|budget for)\b"
        ),
    ),
    (
        "model_choice",
        re.compile(
            r"\b(which model|switch\w*|substitut\w*|alternative model|cheaper model|smaller model|"
            r"downgrade|model choice|choose a model|compare models?|replace \w+ with)\b"
        ),
    ),
    (
        "latency",
        re.compile(r"\b(latency|slow\w*|faster|speed\w*|response times?|p50|p95|p99|ttft|timeouts?)\b"),
    ),
    (
        "cost",
        re.compile(
            r"(\$|\b(cost\w*|spend\w*|spent|money|bill\w*|expensive|cheap\w*|price\w*|pricing|sav(e|ing)s?|cut)\b)"
        ),
    ),
    (
        "usage_overview",
        re.compile(r"\b(overview|summary|summari[sz]e|usage|how much|breakdown|volume|traffic)\b"),
    ),
)
_DOMAIN = re.compile(
    r"\b(llm|gpt|claude|gemini|mistral|llama|model\w*|token\w*|prompt\w*|openai|anthropic|"
    r"api|requests?|workloads?|inference|agent\w*|chat\w*|ai)\b"
)
_OFF_TOPIC = re.compile(
    r"\b(weather|recipe|joke|poem|song|football|soccer|movie|stock price|horoscope|capital of)\b"
)
_LAST_N = re.compile(r"\b(?:last|past|previous)\s+(\d{1,3})\s+(day|week|month)s?\b")
_LAST_ONE = re.compile(r"\b(?:last|past|previous)\s+(day|week|month|quarter)\b")
_THIS = re.compile(r"\bthis\s+(week|month)\b")
_GROWTH = re.compile(
    r"([+-]?\d{1,3}(?:\.\d+)?)\s?%\s*(?:monthly\s+|a\s+month\s+|per\s+month\s+)?(?:growth|grow\w*|increase|more|up)"
    r"|(?:grow\w*|increase\w*|growth of|up)\s+(?:by\s+)?([+-]?\d{1,3}(?:\.\d+)?)\s?%"
)
_ISO_RANGE = re.compile(r"(\d{4}-\d{2}-\d{2})\s*(?:to|-|–|until|through)\s*(\d{4}-\d{2}-\d{2})")


def classify(question: str) -> Intent:
    text = question.lower()
    for intent, pattern in _INTENT_PATTERNS:
        if pattern.search(text):
            return intent
    if _OFF_TOPIC.search(text) or not _DOMAIN.search(text):
        return "out_of_scope" if _OFF_TOPIC.search(text) else "general"
    return "general"


def extract_period(question: str, now: datetime) -> Period:
    """The time range the question names, relative to ``now``; empty when none."""
    text = question.lower()
    if match := _ISO_RANGE.search(text):
        start = datetime.fromisoformat(match[1]).replace(tzinfo=now.tzinfo)
        end = datetime.fromisoformat(match[2]).replace(tzinfo=now.tzinfo) + timedelta(days=1)
        return Period(start=start, end=end)
    day = timedelta(days=1)
    spans = {"day": day, "week": 7 * day, "month": 30 * day, "quarter": 91 * day}
    if match := _LAST_N.search(text):
        return Period(start=now - int(match[1]) * spans[match[2]], end=now)
    if match := _LAST_ONE.search(text):
        return Period(start=now - spans[match[1]], end=now)
    if match := _THIS.search(text):
        midnight = datetime.combine(now.date(), time(), tzinfo=now.tzinfo)
        start = midnight - timedelta(days=now.weekday()) if match[1] == "week" else midnight.replace(day=1)
        return Period(start=start, end=now)
    if "yesterday" in text:
        midnight = datetime.combine(now.date(), time(), tzinfo=now.tzinfo)
        return Period(start=midnight - day, end=midnight)
    if "today" in text:
        return Period(start=datetime.combine(now.date(), time(), tzinfo=now.tzinfo), end=now)
    return Period()


def extract_models(question: str, catalogue: PriceCatalogue | None = None) -> list[str]:
    """Catalogue models the question names, in the order it names them; a shorter name
    that is only part of a longer one found (``gpt-4o`` in ``gpt-4o-mini``) does not count."""
    text = question.lower()
    catalogue = catalogue or PriceCatalogue.default()
    names = sorted(catalogue.names(), key=len, reverse=True)
    found: list[tuple[int, str]] = []
    for name in names:
        for match in re.finditer(re.escape(name), text):
            end = match.end()
            if end < len(text) and (text[end].isalnum() or text[end] in "-."):
                continue
            if not any(match.start() >= at and match.end() <= at + len(longer) for at, longer in found):
                found.append((match.start(), name))
            break
    return [name for _, name in sorted(found)]


def extract_growth(question: str) -> float | None:
    """A monthly growth in percent the question gives ("at 20% growth", "grows by 15%")."""
    match = _GROWTH.search(question.lower())
    if match is None:
        return None
    return float(match[1] if match[1] is not None else match[2])


_WORD = re.compile(r"[a-z0-9][a-z0-9._/:-]*")
_PUNCTUATION = re.compile(r"[^a-z0-9]+")
_SPAN = 8  # "meta llama/llama 4 scout 17b 16e instruct": a name may be written as several words


def mentioned_models(
    models: list[str], texts: list[str], catalogue: PriceCatalogue | None = None
) -> list[str]:
    """The names in ``models`` that one of ``texts`` names, lower case, once each, in order.

    A name counts when up to eight adjacent words of a text spell it, ignoring case, spaces
    and punctuation ("GPT 4o" names ``gpt-4o``, "gpt-4o-mini" does not), and when it looks
    like a model: a catalogue name, or one with a digit or a hyphen (never a word such as
    "models"). A language model's classification may name models the question never did;
    those would filter the tenant's data down to nothing."""
    known = set((catalogue or PriceCatalogue.default()).names())
    spelled: set[str] = set()
    for text in texts:
        words = [_PUNCTUATION.sub("", w) for w in _WORD.findall(text.lower())]
        for i in range(len(words)):
            spelled.update("".join(words[i:j]) for j in range(i + 1, min(i + _SPAN, len(words)) + 1))
    kept: list[str] = []
    for model in (m.strip().lower() for m in models):
        looks_like_a_model = model in known or any(c.isdigit() or c == "-" for c in model)
        if looks_like_a_model and _PUNCTUATION.sub("", model) in spelled and model not in kept:
            kept.append(model)
    return kept
