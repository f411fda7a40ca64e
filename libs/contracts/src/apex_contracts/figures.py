"""A report's figures as data: each number a report states is a ``Figure`` with its value,
unit, what it measures, the entity it is about and the tool call and field it came from.
The text is rendered from them (the offline brain) or checked against them (a language
model's text): a number whose value, measure or entity does not match a figure is refused.

Measures: ``cost`` (money spent, or projected), ``saving`` (money or a fraction saved),
``share`` (a fraction of a whole: of spend, of requests), ``requests``, ``failed_calls``,
``error_rate``, ``latency`` (ms; ``qualifier`` p50/p95/p99), ``tokens``, ``price`` (USD
per million tokens), ``growth`` (percent a month), ``days``.

Units: ``usd`` (over the period analysed), ``usd_per_month`` (scaled to 30 days),
``usd_per_mtok``, ``ratio`` (a fraction, stated as a percentage), ``percent`` (already a
percentage), ``count``, ``tokens``, ``ms``, ``days``.

An ``Entity`` with no field set is the whole period analysed; otherwise it names the
model (and provider), the workload, both (a workload on a model), or a day.
"""

from __future__ import annotations

from typing import Literal

from apex_contracts.envelope import Model
from apex_contracts.ids import CallId

Measure = Literal[
    "cost",
    "saving",
    "share",
    "requests",
    "failed_calls",
    "error_rate",
    "latency",
    "tokens",
    "price",
    "growth",
    "days",
]
Unit = Literal["usd", "usd_per_month", "usd_per_mtok", "ratio", "percent", "count", "tokens", "ms", "days"]
MONEY_UNITS: frozenset[str] = frozenset({"usd", "usd_per_month", "usd_per_mtok"})


class Entity(Model):
    model: str | None = None
    provider: str | None = None
    workload: str | None = None
    day: str | None = None
    alternative: str | None = None  # the model a substitution figure compares with

    @property
    def kind(self) -> str:
        if self.workload and self.model:
            return "workload_model"
        if self.workload:
            return "workload"
        if self.model:
            return "model"
        if self.provider:
            return "provider"
        if self.day:
            return "day"
        return "period"

    def names(self) -> set[str]:
        """The names a text would use for this entity (empty: the whole period)."""
        return {n for n in (self.model, self.workload, self.day, self.alternative) if n} or (
            {self.provider} if self.provider else set()
        )

    def label(self) -> str:
        if self.kind == "period":
            return "the whole period"
        parts = [
            f"workload {self.workload}" if self.workload else "",
            f"model {self.model}" if self.model else "",
        ]
        parts.append(f"provider {self.provider}" if self.provider and not self.model else "")
        parts.append(f"day {self.day}" if self.day else "")
        parts.append(f"compared with {self.alternative}" if self.alternative else "")
        return ", ".join(p for p in parts if p)


class FigureSource(Model):
    """The tool call a figure comes from and the field of its result (a JSON path such
    as ``rows[2].monthly_saving_usd``)."""

    call_id: CallId
    tool: str
    field: str


class Figure(Model):
    value: float
    unit: Unit
    measure: Measure
    entity: Entity = Entity()
    qualifier: str | None = None  # e.g. "p95", "alternative", "list price", "next month"
    source: FigureSource
    prices: list[str] = []  # for money: what priced it (the price table and its version, ...)
