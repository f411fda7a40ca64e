"""The ``report`` object, built from tool results only: totals and per-model figures from
``cost_breakdown`` and ``latency_profile``, one recommendation per saving a savings tool
found (each citing the call that found it, with its kind, workload, model, target and
saving as a figure), the data gaps, and every figure the text may state (``bind.py``).
Deterministic, so both brains produce the same report from the same evidence."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from apex_agents.analyst.bind import Binder, evidence_of, say
from apex_contracts.commands import StepFailure
from apex_contracts.envelope import Model
from apex_contracts.figures import Figure
from apex_contracts.report import (
    Confidence,
    ModelUsage,
    Recommendation,
    RecommendationKind,
    Report,
    Target,
    ToolEvidence,
    TriageOutput,
)
from apex_contracts.tools import (
    BatchResult,
    CachingResult,
    CostBreakdownResult,
    CoverageResult,
    ErrorWasteResult,
    GrowthResult,
    LatencyResult,
    OutlierResult,
    SubstitutionResult,
    SubstitutionRow,
)

R = TypeVar("R", bound=Model)
SAVINGS_TOOLS = frozenset(
    {"model_substitution", "caching_opportunity", "batch_opportunity", "error_waste", "prompt_outliers"}
)
MAX_RECOMMENDATIONS = 8
MIN_MONTHLY_SAVING = 0.01
GAP_TEXT = {
    "latency_ms": "latency_ms is missing, so latency percentiles and latency effects are unknown",
    "workload": "workload is missing, so savings cannot be attributed to your applications",
    "prompt_hash": "prompt_hash is missing, so repeated prompts (caching) cannot be found",
    "cached_tokens": "cached_tokens is missing, so the current cache hit rate is unknown",
    "ts": "fewer than two weeks of data, so the growth trend is uncertain",
}


def found(
    evidence: list[ToolEvidence], tool: str, model: type[R], **match: Any
) -> tuple[R, ToolEvidence] | None:
    """The first successful result of ``tool`` whose fields equal ``match``, with its evidence."""
    for item in evidence:
        if (
            item.tool == tool
            and item.status == "ok"
            and item.result is not None
            and all(item.result.get(k) == v for k, v in match.items())
        ):
            return model.model_validate(item.result), item
    return None


def find(evidence: list[ToolEvidence], tool: str, model: type[R], **match: Any) -> tuple[R, str] | None:
    """The first successful result of ``tool`` whose fields equal ``match``, with its call id."""
    hit = found(evidence, tool, model, **match)
    return None if hit is None else (hit[0], hit[1].call_id)


def build_report(triage: TriageOutput, evidence: list[ToolEvidence], failures: list[StepFailure]) -> Report:
    coverage = find(triage.evidence, "usage_coverage", CoverageResult)
    binder = Binder()
    costs = found(evidence, "cost_breakdown", CostBreakdownResult, group_by="model")
    for group in ("model", "workload"):
        if hit := found(evidence, "cost_breakdown", CostBreakdownResult, group_by=group):
            binder.costs(hit[1], hit[0])
    for group in ("model", "workload"):
        if timed := found(evidence, "latency_profile", LatencyResult, group_by=group):
            binder.latency(timed[1], timed[0])
    if wasted := found(evidence, "error_waste", ErrorWasteResult):
        binder.errors(wasted[1], wasted[0])
    if grown := found(evidence, "growth_projection", GrowthResult):
        binder.growth(grown[1], grown[0])
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
    recs = recommendations(evidence, costs[1].call_id if costs else None, binder)
    return Report(
        period=coverage[0].period if coverage else triage.period,
        total_cost_usd=costs[0].total_cost_usd if costs else 0,
        requests=costs[0].requests if costs else (coverage[0].rows if coverage else 0),
        by_model=by_model,
        recommendations=recs,
        data_gaps=data_gaps(triage, evidence, failures, coverage[0] if coverage else None),
        figures=binder.figures,
        price_sources=sorted({p for f in binder.figures for p in f.prices}),
    )


def data_gaps(
    triage: TriageOutput,
    evidence: list[ToolEvidence],
    failures: list[StepFailure],
    coverage: CoverageResult | None,
) -> list[str]:
    gaps = [GAP_TEXT.get(f, f"{f} is missing") for f in triage.missing_fields]
    if coverage and coverage.unpriced_models:
        gaps.append(
            "no price for "
            + ", ".join(coverage.unpriced_models)
            + " in the price table or your overrides: their calls count what you uploaded, else nothing "
            "(set a price override)"
        )
    gaps += [f"the {e.tool} analysis failed" for e in evidence if e.status != "ok"]
    gaps += [f"the {f.agent} agent failed" for f in failures]
    return gaps


Maker = Callable[[Any, tuple[ToolEvidence, list[str]], list[str], Binder], list[Recommendation]]


def recommendations(
    evidence: list[ToolEvidence], costs_call: str | None, binder: Binder | None = None
) -> list[Recommendation]:
    binder = binder or Binder()
    ranked_in: list[tuple[float, Recommendation]] = []
    makers: list[tuple[str, type[Model], Maker]] = [
        ("model_substitution", SubstitutionResult, _substitutions),
        ("caching_opportunity", CachingResult, _caching),
        ("batch_opportunity", BatchResult, _batching),
        ("error_waste", ErrorWasteResult, _errors),
        ("prompt_outliers", OutlierResult, _outliers),
    ]
    for tool, model, make in makers:
        hit = found(evidence, tool, model)
        if hit is None:
            continue
        result, item = hit
        cites = [item.call_id] + ([costs_call] if costs_call else [])
        for rec in make(result, evidence_of(item, result), cites, binder):
            if rec.est_monthly_savings_usd >= MIN_MONTHLY_SAVING:
                ranked_in.append((rec.est_monthly_savings_usd, rec))
    ranked = sorted(ranked_in, key=lambda item: (-item[0], item[1].kind, item[1].title))[:MAX_RECOMMENDATIONS]
    kept = [rec.model_copy(update={"id": f"rec-{n}"}) for n, (_, rec) in enumerate(ranked, start=1)]
    _drop_figures_of_others(binder, kept)
    return kept


def _drop_figures_of_others(binder: Binder, kept: list[Recommendation]) -> None:
    """Leaves out the figures of savings rows no kept recommendation states."""
    rows = {(r.saving.source.call_id, r.saving.source.field.split(".", 1)[0]) for r in kept if r.saving}
    binder.figures = [
        f
        for f in binder.figures
        if f.source.tool not in SAVINGS_TOOLS
        or not f.source.field.startswith("rows[")
        or (f.source.call_id, f.source.field.split(".", 1)[0]) in rows
    ]


def _rec(
    kind: RecommendationKind,
    title: str,
    rationale: str,
    saving: Figure | None,
    confidence: Confidence,
    cites: list[str],
    target: Target,
) -> Recommendation:
    assert saving is not None, "a recommendation's saving is a figure"
    return Recommendation(
        id="rec",
        kind=kind,
        title=title,
        rationale=rationale,
        est_monthly_savings_usd=saving.value,
        confidence=confidence,
        evidence=cites,
        workload=saving.entity.workload,
        model=saving.entity.model,
        provider=saving.entity.provider,
        target=target,
        saving=saving,
    )


def _substitutions(
    result: SubstitutionResult, ev: tuple[ToolEvidence, list[str]], cites: list[str], b: Binder
) -> list[Recommendation]:
    out = []
    for n, r in enumerate(result.rows):
        saving = b.substitution(ev, n, r)
        moved = {
            "workload": r.workload,
            "model": r.model,
            "provider": r.provider,
            "alternative": r.alternative,
        }
        share = b.say("saving", "list price", **moved)
        out.append(
            _rec(
                "model_substitution",
                f"Move {r.workload} from {r.model} to {r.alternative}",
                (
                    f"{r.alternative} is a current {r.provider} model "
                    + (
                        "of the same class"
                        if r.similar
                        else "one class smaller: check quality on a sample first"
                    )
                    + f"; for this workload's tokens it costs {share} less at list prices. "
                    f"Latency: {_latency_effect(b, r)}."
                ),
                saving,
                r.confidence,
                cites,
                Target(kind="model", model=r.alternative),
            )
        )
    return out


def _latency_effect(b: Binder, r: SubstitutionRow) -> str:
    """The tool's latency effect, its figures rendered from the bound figures."""
    here = b.get("latency", "p50", workload=r.workload, model=r.model, provider=r.provider)
    there = b.get("latency", "p50", model=r.alternative, provider=r.provider)
    if there is None:
        return r.latency_effect  # no figure in it: "not measured yet ..."
    if here is None:
        return f"p50 {say(there)} on your other workloads; this one has no latency data"
    word = r.latency_effect.split(" ", 1)[0]
    return f"{word} on your other workloads (p50 {say(there)} there, {say(here)} here; prompts differ)"


def _caching(
    result: CachingResult, ev: tuple[ToolEvidence, list[str]], cites: list[str], b: Binder
) -> list[Recommendation]:
    out = []
    for n, r in enumerate(result.rows):
        at = {"model": r.model, "provider": r.provider}
        if r.cached_price is not None and r.monthly_saving_usd >= MIN_MONTHLY_SAVING:
            saving = b.caching(ev, n, r, response=False)
            out.append(
                _rec(
                    "prompt_caching",
                    f"Cache repeated prompts on {r.model}",
                    (
                        f"{b.say('requests', 'repeated', **at)} calls repeat an earlier prompt "
                        f"({b.say('share', 'repeated', **at)} of those with a prompt hash); served from the "
                        f"prompt cache their input costs {b.say('price', 'cached input', **at)} instead of "
                        f"{b.say('price', 'input', **at)} per million tokens."
                    ),
                    saving,
                    "medium",
                    cites,
                    Target(kind="prompt_cache", model=r.model),
                )
            )
        elif r.monthly_response_cache_saving_usd >= MIN_MONTHLY_SAVING:
            saving = b.caching(ev, n, r, response=True)
            out.append(
                _rec(
                    "response_caching",
                    f"Cache responses to repeated prompts on {r.model}",
                    (
                        f"{b.say('requests', 'repeated', **at)} calls repeat an earlier prompt and {r.model} "
                        "has no prompt cache; an application cache of identical prompts would avoid them, where "
                        "the same answer may be reused."
                    ),
                    saving,
                    "low",
                    cites,
                    Target(kind="response_cache", model=r.model),
                )
            )
    return out


def _batching(
    result: BatchResult, ev: tuple[ToolEvidence, list[str]], cites: list[str], b: Binder
) -> list[Recommendation]:
    out = []
    for n, r in enumerate(result.rows):
        saving = b.batch(ev, n, r)
        at = {"workload": r.workload, "model": r.model, "provider": r.provider}
        out.append(
            _rec(
                "batch_api",
                f"Run {r.workload} through the {r.provider} Batch API",
                f"{r.workload} looks latency-tolerant ({r.reason}); batch calls on {r.model} cost "
                f"{b.say('saving', 'batch discount', **at)} less and return within a day.",
                saving,
                "high" if r.reason.startswith("named") else "medium",
                cites,
                Target(kind="service_tier", model=r.model, service_tier="batch"),
            )
        )
    return out


def _errors(
    result: ErrorWasteResult, ev: tuple[ToolEvidence, list[str]], cites: list[str], b: Binder
) -> list[Recommendation]:
    out = []
    for n, r in enumerate(result.rows[:3]):
        saving = b.error_row(ev, n, r)
        at = {"workload": r.workload, "model": r.model, "provider": r.provider}
        out.append(
            _rec(
                "error_reduction",
                f"Cut failed calls in {r.workload} on {r.model}",
                f"{b.say('failed_calls', **at)} failed calls out of {b.say('requests', **at)} requests "
                f"({b.say('error_rate', **at)} failed), all paid for. {r.advice}",
                saving,
                "medium",
                cites,
                Target(kind="failed_calls", model=r.model),
            )
        )
    return out


def _outliers(
    result: OutlierResult, ev: tuple[ToolEvidence, list[str]], cites: list[str], b: Binder
) -> list[Recommendation]:
    out = []
    for n, r in enumerate(result.rows):
        saving = b.outlier(ev, n, r)
        at = {"workload": r.workload}
        out.append(
            _rec(
                "prompt_trimming",
                f"Trim oversized prompts in {r.workload}",
                f"{b.say('requests', 'outliers', **at)} prompts exceed {b.say('tokens', 'threshold', **at)} tokens, "
                f"far above the median of {b.say('tokens', 'median', **at)} tokens; trimming them to the median "
                f"(less context, summarised history) removes {b.say('tokens', 'excess', **at)} input tokens.",
                saving,
                "low",
                cites,
                Target(kind="prompt_size", max_prompt_tokens=r.p50_tokens),
            )
        )
    return out
