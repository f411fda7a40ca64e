"""Checks that a report's figures are bound to what they claim: each names a tool call of
the run and a field of its result holding the figure's value."""

from __future__ import annotations

import re
from typing import Any

from apex_contracts.figures import Figure

_STEP = re.compile(r"([a-z_0-9]+)(?:\[(\d+)\])?")


def figures_of(report: dict[str, Any]) -> list[Figure]:
    return [Figure.model_validate(f) for f in report["figures"]]


def field_value(result: dict[str, Any], path: str) -> Any:
    value: Any = result
    for part in path.split("."):
        match = _STEP.fullmatch(part)
        assert match, path
        value = value[match[1]]
        if match[2] is not None:
            value = value[int(match[2])]
    return value


def assert_bound(report: dict[str, Any], completed: list[dict[str, Any]]) -> None:
    """Every figure's source is a completed tool call of the run and the field it names
    holds the figure's value; money names what priced it."""
    results = {e["data"]["call_id"]: e["data"] for e in completed}
    figures = figures_of(report)
    assert figures, "a report states figures"
    for figure in figures:
        source = results.get(figure.source.call_id)
        assert source is not None, f"{figure.source} is a tool call of this run"
        assert source["tool"] == figure.source.tool
        assert field_value(source["result"], figure.source.field) == figure.value, figure
        if figure.unit in ("usd", "usd_per_month") and figure.value:
            assert figure.prices, f"{figure} names what priced it"
    for rec in report["recommendations"]:
        assert rec["saving"]["value"] == rec["est_monthly_savings_usd"] and rec["target"], rec["title"]
