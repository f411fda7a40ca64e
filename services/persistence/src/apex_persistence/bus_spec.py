"""The routers persistence serves, wired to nothing: for generating the AsyncAPI document."""

from __future__ import annotations

from faststream.nats import NatsRouter

from apex_persistence.analytics.usage import UsageLedger
from apex_persistence.api.ingest import UsageIngestHandler, build_ingest_router
from apex_persistence.api.queries import ReadApi, build_query_router
from apex_persistence.postgres.cursors import CursorStore
from apex_persistence.postgres.reads import HistoryReads
from apex_runtime import CircuitBreaker


def routers() -> list[NatsRouter]:
    breakers = {store: CircuitBreaker(store) for store in ("postgres", "clickhouse")}
    reads = ReadApi(
        HistoryReads.__new__(HistoryReads),
        UsageLedger.__new__(UsageLedger),
        CursorStore.__new__(CursorStore),
        breakers,
        failures={"postgres": (), "clickhouse": ()},
    )
    ingest = UsageIngestHandler.__new__(UsageIngestHandler)
    return [build_query_router(reads), build_ingest_router(ingest)]
