"""Shared pieces of tool implementations: filters and citations."""

from __future__ import annotations

from apex_contracts.queries import UsageFilter, UsageRows
from apex_contracts.tools import PeriodInput, QueryCitation


def usage_filter(args: PeriodInput) -> UsageFilter:
    return UsageFilter(start=args.period.start, end=args.period.end, models=args.models)


def cite(*results: UsageRows) -> list[QueryCitation]:
    return [QueryCitation(sql=r.sql, elapsed_ms=round(r.elapsed_ms, 2)) for r in results]
