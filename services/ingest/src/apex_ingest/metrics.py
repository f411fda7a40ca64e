"""The ingest service's Prometheus metrics (``apex_ingest_*``).

``ingest_metrics()`` creates them on its first call in the process-wide registry that
``/metrics`` serves (two services in one test process share them); a test that wants
its own counts builds ``IngestMetrics(CollectorRegistry())``."""

from __future__ import annotations

import functools

from prometheus_client import REGISTRY, CollectorRegistry, Counter


class IngestMetrics:
    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.records = Counter(
            "apex_ingest_records_total",
            "Usage records by source (csv, json, ndjson, otlp, openai, anthropic) and outcome "
            "(accepted, duplicate, rejected)",
            ["source", "outcome"],
            registry=registry,
        )
        self.syncs = Counter(
            "apex_ingest_connector_syncs_total",
            "Provider connector syncs by provider and outcome (ok, or the error code)",
            ["provider", "outcome"],
            registry=registry,
        )

    def count(self, source: str, accepted: int, duplicates: int, rejected: int) -> None:
        for outcome, value in (("accepted", accepted), ("duplicate", duplicates), ("rejected", rejected)):
            if value:
                self.records.labels(source, outcome).inc(value)


@functools.cache
def ingest_metrics() -> IngestMetrics:
    return IngestMetrics()
