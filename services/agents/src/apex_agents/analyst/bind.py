"""Figures bound to what they claim: each number a report may state, taken from one field
of one tool result, with its unit, measure and entity (``apex_contracts.figures``).

``Binder`` turns the tool results a report uses into figures; the template text and the
recommendations' rationales are rendered from them (``say``), and a language model's
text is checked against them (``analyst/figures.py``)."""

from __future__ import annotations

from typing import Any

from apex_contracts.figures import Entity, Figure, FigureSource, Measure, Unit
from apex_contracts.report import ToolEvidence
from apex_contracts.tools import (
    BatchRow,
    CachingRow,
    CostBreakdownResult,
    ErrorRow,
    ErrorWasteResult,
    GrowthResult,
    LatencyResult,
    OutlierRow,
    SubstitutionRow,
)

MAX_WORKLOADS = 8


def say(figure: Figure | None) -> str:
    """A figure as the text states it (and as the validator reads it back)."""
    if figure is None:
        return "n/a"
    value, unit = figure.value, figure.unit
    if unit in ("usd", "usd_per_month", "usd_per_mtok"):
        return f"${value:,.2f}"
    if unit == "ratio":
        return f"{value * 100:.1f}%"
    if unit == "percent":
        return f"{value:+.1f}%"
    if unit == "ms":
        return f"{value:,.0f} ms"
    if unit == "days":
        return f"{value:,.1f}"
    return f"{value:,.0f}"


class Binder:
    """Collects the figures of one report."""

    def __init__(self, figures: list[Figure] | None = None) -> None:
        self.figures: list[Figure] = list(figures or [])

    def add(
        self,
        evidence: tuple[ToolEvidence, list[str]],
        field: str,
        value: float | None,
        unit: Unit,
        measure: Measure,
        entity: Entity | None = None,
        qualifier: str | None = None,
    ) -> Figure | None:
        if value is None:
            return None
        item, prices = evidence
        money = unit in ("usd", "usd_per_month", "usd_per_mtok")
        figure = Figure(
            value=value,
            unit=unit,
            measure=measure,
            entity=entity or Entity(),
            qualifier=qualifier,
            source=FigureSource(call_id=item.call_id, tool=item.tool, field=field),
            prices=prices if money else [],
        )
        self.figures.append(figure)
        return figure

    def get(self, measure: Measure, qualifier: str | None = None, **entity: str | None) -> Figure | None:
        """The first figure of ``measure`` about exactly ``entity``."""
        wanted = Entity(**entity)
        return next(
            (
                f
                for f in self.figures
                if f.measure == measure and f.entity == wanted and f.qualifier == qualifier
            ),
            None,
        )

    def say(self, measure: Measure, qualifier: str | None = None, **entity: str | None) -> str:
        return say(self.get(measure, qualifier, **entity))

    # --- tool results --------------------------------------------------------------------

    def costs(self, item: ToolEvidence, result: CostBreakdownResult) -> None:
        ev = (item, result.price_sources)
        if result.group_by == "model":
            self.add(ev, "total_cost_usd", result.total_cost_usd, "usd", "cost")
            self.add(ev, "requests", result.requests, "count", "requests")
        rows = result.rows if result.group_by == "model" else result.rows[:MAX_WORKLOADS]
        for n, row in enumerate(rows):
            entity = (
                Entity(model=row.key, provider=row.provider)
                if result.group_by == "model"
                else Entity(**{result.group_by: row.key})
            )
            ev_row = (item, row.price_sources or result.price_sources)
            self.add(ev_row, f"rows[{n}].cost_usd", row.cost_usd, "usd", "cost", entity)
            self.add(ev, f"rows[{n}].requests", row.requests, "count", "requests", entity)
            self.add(ev, f"rows[{n}].share", row.share, "ratio", "share", entity)

    def latency(self, item: ToolEvidence, result: LatencyResult) -> None:
        ev: tuple[ToolEvidence, list[str]] = (item, [])
        for n, row in enumerate(result.rows):
            if not row.measured:
                continue
            entity = (
                Entity(model=row.key, provider=row.provider)
                if result.group_by == "model"
                else Entity(workload=row.key)
            )
            for stat in ("p50", "p95", "p99"):
                value = getattr(row, f"{stat}_ms")
                self.add(ev, f"rows[{n}].{stat}_ms", value, "ms", "latency", entity, stat)

    def substitution(self, ev: tuple[ToolEvidence, list[str]], n: int, row: SubstitutionRow) -> Figure | None:
        here = Entity(workload=row.workload, model=row.model, provider=row.provider)
        moved = here.model_copy(update={"alternative": row.alternative})
        self.add(ev, f"rows[{n}].saving_share", row.saving_share, "ratio", "saving", moved, "list price")
        self.add(ev, f"rows[{n}].p50_ms", row.p50_ms, "ms", "latency", here, "p50")
        there = Entity(model=row.alternative, provider=row.provider)
        self.add(ev, f"rows[{n}].alternative_p50_ms", row.alternative_p50_ms, "ms", "latency", there, "p50")
        saving = row.monthly_saving_usd
        return self.add(ev, f"rows[{n}].monthly_saving_usd", saving, "usd_per_month", "saving", moved)

    def caching(
        self, ev: tuple[ToolEvidence, list[str]], n: int, row: CachingRow, response: bool
    ) -> Figure | None:
        at = Entity(model=row.model, provider=row.provider)
        self.add(
            ev, f"rows[{n}].repeated_requests", row.repeated_requests, "count", "requests", at, "repeated"
        )
        self.add(ev, f"rows[{n}].repeat_share", row.repeat_share, "ratio", "share", at, "repeated")
        if response:
            field, value = "monthly_response_cache_saving_usd", row.monthly_response_cache_saving_usd
            return self.add(ev, f"rows[{n}].{field}", value, "usd_per_month", "saving", at, "response cache")
        self.add(ev, f"rows[{n}].cached_price", row.cached_price, "usd_per_mtok", "price", at, "cached input")
        self.add(ev, f"rows[{n}].input_price", row.input_price, "usd_per_mtok", "price", at, "input")
        return self.add(
            ev, f"rows[{n}].monthly_saving_usd", row.monthly_saving_usd, "usd_per_month", "saving", at
        )

    def batch(self, ev: tuple[ToolEvidence, list[str]], n: int, row: BatchRow) -> Figure | None:
        at = Entity(workload=row.workload, model=row.model, provider=row.provider)
        self.add(ev, f"rows[{n}].batch_discount", row.batch_discount, "ratio", "saving", at, "batch discount")
        return self.add(
            ev, f"rows[{n}].monthly_saving_usd", row.monthly_saving_usd, "usd_per_month", "saving", at
        )

    def error_row(self, ev: tuple[ToolEvidence, list[str]], n: int, row: ErrorRow) -> Figure | None:
        at = Entity(workload=row.workload, model=row.model, provider=row.provider)
        self.add(ev, f"rows[{n}].failed", row.failed, "count", "failed_calls", at)
        self.add(ev, f"rows[{n}].requests", row.requests, "count", "requests", at)
        self.add(ev, f"rows[{n}].error_rate", row.error_rate, "ratio", "error_rate", at)
        return self.add(
            ev, f"rows[{n}].monthly_wasted_usd", row.monthly_wasted_usd, "usd_per_month", "saving", at
        )

    def errors(self, item: ToolEvidence, result: ErrorWasteResult) -> None:
        ev = (item, result.price_sources)
        self.add(ev, "failed", result.failed, "count", "failed_calls")
        self.add(ev, "requests", result.requests, "count", "requests", None, "all")
        self.add(ev, "error_rate", result.error_rate, "ratio", "error_rate")
        self.add(
            ev,
            "total_monthly_saving_usd",
            result.total_monthly_saving_usd,
            "usd_per_month",
            "cost",
            None,
            "wasted",
        )

    def outlier(self, ev: tuple[ToolEvidence, list[str]], n: int, row: OutlierRow) -> Figure | None:
        at = Entity(workload=row.workload)
        self.add(ev, f"rows[{n}].outliers", row.outliers, "count", "requests", at, "outliers")
        self.add(ev, f"rows[{n}].threshold_tokens", row.threshold_tokens, "tokens", "tokens", at, "threshold")
        self.add(ev, f"rows[{n}].p50_tokens", row.p50_tokens, "tokens", "tokens", at, "median")
        self.add(ev, f"rows[{n}].excess_tokens", row.excess_tokens, "tokens", "tokens", at, "excess")
        return self.add(
            ev, f"rows[{n}].monthly_saving_usd", row.monthly_saving_usd, "usd_per_month", "saving", at
        )

    def growth(self, item: ToolEvidence, result: GrowthResult) -> None:
        ev = (item, result.price_sources)
        self.add(
            ev,
            "current_monthly_cost_usd",
            result.current_monthly_cost_usd,
            "usd_per_month",
            "cost",
            None,
            "now",
        )
        self.add(ev, "growth_pct_used", result.growth_pct_used, "percent", "growth")
        self.add(
            ev,
            "projected_next_month_cost_usd",
            result.projected_next_month_cost_usd,
            "usd_per_month",
            "cost",
            None,
            "next month",
        )


def evidence_of(item: ToolEvidence, result: Any) -> tuple[ToolEvidence, list[str]]:
    return item, list(getattr(result, "price_sources", []) or [])
