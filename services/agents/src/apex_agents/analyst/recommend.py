"""The ``report`` object, built from tool results only: totals and per-model figures from
``cost_breakdown`` and ``latency_profile``, one recommendation per saving a savings tool
found (each citing the call that found it), and the data gaps. Deterministic, so both
brains produce the same report from the same evidence."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from apex_contracts.envelope import Model
from apex_contracts.report import (
    Confidence,
    ModelUsage,
    Recommendation,
    Report,
    ToolEvidence,
    TriageOutput,
)
from apex_contracts.tools import (
    BatchResult,
    CachingResult,
    CostBreakdownResult,
    CoverageResult,
    ErrorWasteResult,
    LatencyResult,
    OutlierResult,
    SubstitutionResult,
)

R = TypeVar("R", bound=Model)
MAX_RECOMMENDATIONS = 8
MIN_MONTHLY_SAVING = 0.01
GAP_TEXT = {
    "latency_ms": "latency_ms is missing, so latency percentiles and latency effects are unknown",
    "workload": "workload is missing, so savings cannot be attributed to your applications",
    "prompt_hash": "prompt_hash is missing, so repeated prompts (caching) cannot be found",
    "cached_tokens": "cached_tokens is missing, so the current cache hit rate is unknown",
    "ts": "fewer than two weeks of data, so the growth trend is uncertain",
}


def find(evidence: list[ToolEvidence], tool: str, model: type[R], **match: Any) -> tuple[R, str] | None:
    """The first successful result of ``tool`` whose fields equal ``match``, with its call id."""
    for item in evidence:
        if (
            item.tool == tool
            and item.status == "ok"
            and item.result is not None
            and all(item.result.get(k) == v for k, v in match.items())
        ):
            return model.model_validate(item.result), item.call_id
    return None


def build_report(
    triage: TriageOutput, evidence: list[ToolEvidence], failures: list[dict[str, Any]]
) -> Report:
    coverage = find(triage.evidence, "usage_coverage", CoverageResult)
    costs = find(evidence, "cost_breakdown", CostBreakdownResult, group_by="model")
    latency = find(evidence, "latency_profile", LatencyResult, group_by="model")
    by_latency = {(r.key, r.provider): r for r in latency[0].rows} if latency else {}
    by_model = [
        ModelUsage(
            model=row.key,
            provider=row.provider or "",
            requests=row.requests,
            cost_usd=row.cost_usd,
            p50_latency_ms=by_latency[(row.key, row.provider)].p50_ms
            if (row.key, row.provider) in by_latency
            else None,
            p95_latency_ms=by_latency[(row.key, row.provider)].p95_ms
            if (row.key, row.provider) in by_latency
            else None,
        )
        for row in (costs[0].rows if costs else [])
    ]
    return Report(
        period=coverage[0].period if coverage else triage.period,
        total_cost_usd=costs[0].total_cost_usd if costs else 0,
        requests=costs[0].requests if costs else (coverage[0].rows if coverage else 0),
        by_model=by_model,
        recommendations=recommendations(evidence, costs[1] if costs else None),
        data_gaps=data_gaps(triage, evidence, failures, coverage[0] if coverage else None),
    )


def data_gaps(
    triage: TriageOutput,
    evidence: list[ToolEvidence],
    failures: list[dict[str, Any]],
    coverage: CoverageResult | None,
) -> list[str]:
    gaps = [GAP_TEXT.get(f, f"{f} is missing") for f in triage.missing_fields]
    if coverage and coverage.unpriced_models:
        gaps.append(
            "no list price for "
            + ", ".join(coverage.unpriced_models)
            + ": their calls cost what you uploaded, else zero (set a price override)"
        )
    gaps += [f"the {e.tool} analysis failed" for e in evidence if e.status != "ok"]
    gaps += [f"the {f.get('agent')} agent failed" for f in failures]
    return gaps


def recommendations(evidence: list[ToolEvidence], costs_call: str | None) -> list[Recommendation]:
    found: list[tuple[float, Recommendation]] = []
    makers: list[tuple[str, type[Model], Callable[..., list[Recommendation]]]] = [
        ("model_substitution", SubstitutionResult, _substitutions),
        ("caching_opportunity", CachingResult, _caching),
        ("batch_opportunity", BatchResult, _batching),
        ("error_waste", ErrorWasteResult, _errors),
        ("prompt_outliers", OutlierResult, _outliers),
    ]
    for tool, model, make in makers:
        hit = find(evidence, tool, model)
        if hit is None:
            continue
        result, call_id = hit
        cites = [call_id] + ([costs_call] if costs_call else [])
        for rec in make(result, cites):
            if rec.est_monthly_savings_usd >= MIN_MONTHLY_SAVING:
                found.append((rec.est_monthly_savings_usd, rec))
    ranked = sorted(found, key=lambda item: (-item[0], item[1].kind, item[1].title))[:MAX_RECOMMENDATIONS]
    return [rec.model_copy(update={"id": f"rec-{n}"}) for n, (_, rec) in enumerate(ranked, start=1)]


def _rec(
    kind: str, title: str, rationale: str, saving: float, confidence: Confidence, cites: list[str]
) -> Recommendation:
    return Recommendation(
        id="rec",
        kind=kind,
        title=title,
        rationale=rationale,
        est_monthly_savings_usd=saving,
        confidence=confidence,
        evidence=cites,
    )


def pct(share: float) -> str:
    return f"{share * 100:.1f}%"


def usd(value: float) -> str:
    return f"${value:,.2f}"


def _substitutions(result: SubstitutionResult, cites: list[str]) -> list[Recommendation]:
    return [
        _rec(
            "model_substitution",
            f"Move {r.workload} from {r.model} to {r.alternative}",
            (
                f"{r.alternative} is a current {r.provider} model "
                + ("of the same class" if r.similar else "one class smaller: check quality on a sample first")
                + f"; for this workload's tokens it costs {pct(r.saving_share)} less at list prices. "
                f"Latency: {r.latency_effect}."
            ),
            r.monthly_saving_usd,
            r.confidence,
            cites,
        )
        for r in result.rows
    ]


def _caching(result: CachingResult, cites: list[str]) -> list[Recommendation]:
    out = []
    for r in result.rows:
        if r.cached_price is not None and r.monthly_saving_usd >= MIN_MONTHLY_SAVING:
            out.append(
                _rec(
                    "prompt_caching",
                    f"Cache repeated prompts on {r.model}",
                    (
                        f"{r.repeated_requests:,} calls repeat an earlier prompt ({pct(r.repeat_share)} of those "
                        f"with a prompt hash); served from the prompt cache their input costs "
                        f"{usd(r.cached_price)} instead of {usd(r.input_price)} per million tokens."
                    ),
                    r.monthly_saving_usd,
                    "medium",
                    cites,
                )
            )
        elif r.monthly_response_cache_saving_usd >= MIN_MONTHLY_SAVING:
            out.append(
                _rec(
                    "response_caching",
                    f"Cache responses to repeated prompts on {r.model}",
                    (
                        f"{r.repeated_requests:,} calls repeat an earlier prompt and {r.model} has no prompt cache; "
                        "an application cache of identical prompts would avoid them, where the same answer may be reused."
                    ),
                    r.monthly_response_cache_saving_usd,
                    "low",
                    cites,
                )
            )
    return out


def _batching(result: BatchResult, cites: list[str]) -> list[Recommendation]:
    return [
        _rec(
            "batch_api",
            f"Run {r.workload} through the {r.provider} Batch API",
            f"{r.workload} looks latency-tolerant ({r.reason}); batch calls on {r.model} cost "
            f"{pct(r.batch_discount)} less and return within a day.",
            r.monthly_saving_usd,
            "high" if r.reason.startswith("named") else "medium",
            cites,
        )
        for r in result.rows
    ]


def _errors(result: ErrorWasteResult, cites: list[str]) -> list[Recommendation]:
    return [
        _rec(
            "error_reduction",
            f"Cut failed calls in {r.workload} on {r.model}",
            f"{r.failed:,} of {r.requests:,} calls failed ({pct(r.error_rate)}) and were paid for. {r.advice}",
            r.monthly_wasted_usd,
            "medium",
            cites,
        )
        for r in result.rows[:3]
    ]


def _outliers(result: OutlierResult, cites: list[str]) -> list[Recommendation]:
    return [
        _rec(
            "prompt_trimming",
            f"Trim oversized prompts in {r.workload}",
            f"{r.outliers:,} prompts exceed {r.threshold_tokens:,} tokens, far above the median of "
            f"{r.p50_tokens:,}; trimming them to the median (less context, summarised history) removes "
            f"{r.excess_tokens:,} input tokens.",
            r.monthly_saving_usd,
            "low",
            cites,
        )
        for r in result.rows
    ]
