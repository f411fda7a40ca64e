"""The tenant's LLM usage in ``llm_usage``: ingestion (priced, deduplicated) and the
typed aggregates the analyst's tools and the usage summary read. With ``versions``, an
ingest ends by bumping the tenant's version and an aggregate asked again at the same
version is answered from ``AnswerCache`` (``analytics/versions.py``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import pyarrow as pa

from apex_contracts import UsageColumns, UsageRecord, validate_id
from apex_contracts.pricing import ModelPrice, PriceCatalogue
from apex_contracts.queries import UsageAggregate, UsageFilter, UsageRows, UsageSummary
from apex_contracts.report import ModelUsage, Period
from apex_contracts.usage_columns import epoch_ms
from apex_persistence.analytics.aggregate import compile_aggregate, normalise
from apex_persistence.analytics.port import AnalyticsStore
from apex_persistence.analytics.usage_batch import usage_table
from apex_persistence.analytics.versions import AnswerCache, Versions, usage_key, version_or_none
from apex_persistence.views import UsageSummaryView

_INSERT_CHUNK = 10_000


class UsageLedger:
    def __init__(
        self,
        store: AnalyticsStore,
        catalogue: PriceCatalogue,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        *,
        versions: Versions | None = None,
        answers: AnswerCache | None = None,
    ) -> None:
        self.store = store
        self.catalogue = catalogue
        self.clock = clock
        self.failures = store.failures
        self.versions = versions
        self.answers = answers or AnswerCache()

    async def ingest(self, tenant_id: str, records: Sequence[UsageRecord] | UsageColumns) -> int:
        """Stores the records for the tenant, priced where they carry no cost; a record
        stored before (same dedup key) replaces itself. Returns the number of rows sent."""
        tenant_id = validate_id(tenant_id, "ten")
        columns = records if isinstance(records, UsageColumns) else UsageColumns.of(records)
        if not len(columns):
            return 0
        # Off the event loop: pricing a batch is thousands of lookups, and pyarrow's first
        # time conversion in a process loads pandas (about a second).
        table = await asyncio.to_thread(
            usage_table, tenant_id, columns, self.catalogue, epoch_ms(self.clock())
        )
        for batch in table.to_batches(max_chunksize=_INSERT_CHUNK):
            await self.store.insert_arrow("llm_usage", pa.Table.from_batches([batch]))
        if self.versions is not None:
            await self.versions.bump(usage_key(tenant_id))  # after the rows: see analytics/versions.py
        return len(columns)

    async def aggregate(self, query: UsageAggregate) -> UsageRows:
        """The query's rows; an answer read at the tenant's current version is reused
        (a duplicate check, which names its keys, always runs)."""
        started = time.perf_counter()
        key = None if query.filter.dedup_keys else query.model_dump_json()
        version = await version_or_none(self.versions, usage_key(query.tenant_id)) if key else None
        kept = self.answers.get(key, version) if key is not None and version is not None else None
        if kept is not None:
            return kept.model_copy(update={"elapsed_ms": (time.perf_counter() - started) * 1000})
        answer = await self._run(query, started)
        if key is not None and version is not None:
            self.answers.put(key, version, answer)
        return answer

    async def _run(self, query: UsageAggregate, started: float) -> UsageRows:
        repriced = await self._repriced(query) if query.prices and _costs(query) else []
        compiled = compile_aggregate(query, repriced)
        rows = await self.store.select(compiled.sql, compiled.params)
        elapsed_ms = (time.perf_counter() - started) * 1000
        return UsageRows(
            rows=[normalise(row, compiled.kinds) for row in rows],
            sql=self.store.qualify(compiled.sql),
            elapsed_ms=elapsed_ms,
        )

    async def _repriced(self, query: UsageAggregate) -> list[tuple[str, str, ModelPrice]]:
        """The tenant's stored (provider, model) pairs that an override prices: each is
        resolved the way ingest resolves a model (exact, alias, longest prefix)."""
        catalogue = self.catalogue.with_overrides(query.prices)
        pairs = await self.store.select(
            "SELECT DISTINCT u.provider AS provider, u.model AS model FROM $db.llm_usage AS u "
            "WHERE u.tenant_id = {tenant_id:String}",
            {"tenant_id": query.tenant_id},
        )
        out = []
        for pair in pairs:
            entry = catalogue.find(pair["provider"], pair["model"])
            if entry is not None and catalogue.is_override(entry):
                out.append((str(pair["provider"]), str(pair["model"]), entry))
        return out

    async def summary(self, query: UsageSummary) -> UsageSummaryView:
        """Totals, period and per-model figures (requests, cost, p50/p95 latency)."""
        where = UsageFilter(start=query.start, end=query.end)
        totals = await self.aggregate(
            UsageAggregate(
                tenant_id=query.tenant_id,
                metrics=["requests", "cost_usd", "first_ts", "last_ts"],
                filter=where,
                prices=query.prices,
            )
        )
        models = await self.aggregate(
            UsageAggregate(
                tenant_id=query.tenant_id,
                group_by=["model", "provider"],
                metrics=["requests", "cost_usd", "latency_p50", "latency_p95"],
                filter=where,
                order_by="cost_usd",
                limit=1000,
                prices=query.prices,
            )
        )
        total = totals.rows[0] if totals.rows else {}
        return UsageSummaryView(
            period=Period(start=query.start or total.get("first_ts"), end=query.end or total.get("last_ts")),
            requests=int(total.get("requests") or 0),
            total_cost_usd=float(total.get("cost_usd") or 0.0),
            by_model=[
                ModelUsage(
                    model=row["model"],
                    provider=row["provider"],
                    requests=row["requests"],
                    cost_usd=row["cost_usd"] or 0.0,
                    p50_latency_ms=row["latency_p50"],
                    p95_latency_ms=row["latency_p95"],
                )
                for row in models.rows
            ],
            sql=[totals.sql, models.sql],
        )


def _costs(query: UsageAggregate) -> bool:
    return any(metric in ("cost_usd", "error_cost_usd", "cost_sources") for metric in query.metrics)
