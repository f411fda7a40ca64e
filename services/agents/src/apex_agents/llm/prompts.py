"""What the language model is told. The figures it may state come only from the JSON it
is given; the validator enforces that afterwards."""

from __future__ import annotations

from typing import Any

from apex_contracts.report import Intent

INTENTS: tuple[Intent, ...] = (
    "cost",
    "latency",
    "model_choice",
    "caching",
    "usage_overview",
    "forecast",
    "general",
    "out_of_scope",
)

TRIAGE = """You triage questions for Apex, an advisor on a company's LLM usage (spend, latency,
model choice, caching, batching, failed calls, forecasts). Call classify_question exactly once.
intent: cost (spend, where money goes, how to cut it), latency (slowness, p50/p95), model_choice
(which model, switching, cheaper models), caching (repeated prompts, prompt cache), usage_overview
(summary, volumes), forecast (next month, growth, budget), general (about their LLM usage but none
of those), out_of_scope (not about their LLM usage at all).
start/end: the time range the question names as ISO dates (end exclusive), relative to today
{today}; null when it names none. models: model names the question names, lower case.
growth_pct: a monthly growth in percent the question gives ("at 20% growth"), else null.
For a follow-up that names no topic, keep the topic of the earlier question."""

DATA_HELPER = """You are the data helper of Apex. The question, its intent and the data coverage
are below. Call the analysis tools that answer it; independent calls go in one turn, in parallel.
Use the period and models of the triage unless the question asks otherwise. When you have what
you need, answer with the single word: done."""

WRITER = """You are the reporting agent of Apex. Write the answer to the user's question in
markdown, for a busy engineering lead: a headline, the figures that matter, then the
recommendations with their monthly savings and confidence, then data gaps if any.
Rules: state ONLY numbers from FIGURES below, written exactly as given there (money as
$1,234.56, shares as 41.2%, latency as whole ms), each in a sentence that names the same model
or workload and says what it measures (cost, saving, share, requests, failed calls, latency,
tokens, price, growth). Never compute new totals, sums or differences. Never number lists or
headings. Name models and workloads exactly. If you are unsure of a figure, leave it out."""

REWRITE = """These numbers in your text do not match the report's figures: {figures}. Rewrite the
whole answer, stating each number only as FIGURES gives it: same value, same measure, same
model or workload."""


def classify_tool() -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": "classify_question",
            "description": "Record the question's intent, time range and models.",
            "parameters": {
                "type": "object",
                "properties": {
                    "intent": {"type": "string", "enum": list(INTENTS)},
                    "start": {"type": ["string", "null"], "description": "ISO date, inclusive"},
                    "end": {"type": ["string", "null"], "description": "ISO date, exclusive"},
                    "models": {"type": "array", "items": {"type": "string"}},
                    "growth_pct": {
                        "type": ["number", "null"],
                        "description": "a monthly growth in percent the question gives",
                    },
                },
                "required": ["intent"],
            },
        },
    }


def history_messages(history: list[dict[str, str]], limit: int = 3) -> list[dict[str, str]]:
    """Earlier turns of the thread, newest last, answers shortened."""
    out: list[dict[str, str]] = []
    for turn in history[-limit:]:
        out.append({"role": "user", "content": turn.get("question", "")})
        out.append({"role": "assistant", "content": turn.get("answer", "")[:1500]})
    return out
