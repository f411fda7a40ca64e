"""A batch of usage records (``UsageColumns``) as the Arrow table of its ``llm_usage``
rows: each record priced at its own moment where it carries no cost, one tariff looked up
per (model, tier, day) of the batch rather than per record."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from apex_contracts import UsageColumns
from apex_contracts.price_table import Tariff, Tokens
from apex_contracts.pricing import PriceCatalogue
from apex_contracts.usage_columns import from_epoch_ms
from apex_persistence.analytics.rows import REPORTED, UNKNOWN

_DAY_MS = 86_400_000
# Milliseconds since the epoch (UTC) without a zone in the Arrow type: the columns are
# DateTime64(3, 'UTC'), and a zone would have pyarrow load pandas on its first batch.
_TIME = pa.timestamp("ms")
_COUNT = pa.uint64()


def costs(columns: UsageColumns, catalogue: PriceCatalogue) -> tuple[list[float], list[str]]:
    """Each record's cost and its source (``rows.cost_of``, record by record)."""
    out_costs: list[float] = []
    out_sources: list[str] = []
    tariffs: dict[tuple[str, str, str | None, int], Tariff] = {}
    for i, reported in enumerate(columns.cost_usd):
        if reported is not None:
            out_costs.append(reported)
            out_sources.append(REPORTED)
            continue
        provider, model, tier, ms = (
            columns.provider[i],
            columns.model[i],
            columns.service_tier[i],
            columns.ts_ms[i],
        )
        key = (provider, model, tier, ms // _DAY_MS)
        tariff = tariffs.get(key)
        if tariff is None:
            tariff = catalogue.tariff(provider, model, from_epoch_ms(ms), tier)
            if tariff.daily:
                tariffs[key] = tariff
        cost = tariff.cost(
            Tokens(
                columns.prompt_tokens[i],
                columns.completion_tokens[i],
                columns.cached_tokens[i] or 0,
                columns.cache_write_tokens[i] or 0,
            )
        )
        out_costs.append(0.0 if cost is None else cost)
        out_sources.append(UNKNOWN if cost is None else tariff.source)
    return out_costs, out_sources


def warm() -> None:
    """Converts one value now: pyarrow's first conversion of Python values loads pandas
    (about a second of CPU), which the service pays as it starts, not in its first upload."""
    pa.array([0], _TIME)


def usage_table(
    tenant_id: str, columns: UsageColumns, catalogue: PriceCatalogue, ingested_at_ms: int
) -> pa.Table:
    """The ``llm_usage`` rows of the batch for the tenant, ``ingested_at`` one moment."""
    cost, source = costs(columns, catalogue)
    count = len(columns)
    data: dict[str, Any] = {
        "tenant_id": pa.array([tenant_id] * count, pa.string()),
        "ts": pa.array(columns.ts_ms, _TIME),
        "provider": pa.array(columns.provider, pa.string()),
        "model": pa.array(columns.model, pa.string()),
        "workload": pa.array(columns.workload, pa.string()),
        "prompt_tokens": pa.array(columns.prompt_tokens, _COUNT),
        "completion_tokens": pa.array(columns.completion_tokens, _COUNT),
        "cached_tokens": pa.array(columns.cached_tokens, _COUNT),
        "cache_write_tokens": pa.array(columns.cache_write_tokens, _COUNT),
        "reasoning_tokens": pa.array(columns.reasoning_tokens, _COUNT),
        "service_tier": pa.array(columns.service_tier, pa.string()),
        "latency_ms": pa.array(columns.latency_ms, _COUNT),
        "status": pa.array(columns.status, pa.string()),
        "cost_usd": pa.array(cost, pa.float64()),
        "cost_source": pa.array(source, pa.string()),
        "prompt_hash": pa.array(columns.prompt_hash, pa.string()),
        "request_id": pa.array(columns.request_id, pa.string()),
        "dedup_key": pa.array(columns.dedup_key, pa.string()),
        "ingested_at": pa.array([ingested_at_ms] * count, _TIME),
    }
    return pa.table(data)
