"""The tools service's Prometheus metrics (``apex_tools_*``): calls by tool and status,
their duration, errors by code, calls answered from the ledger, and what claiming a
call met (free, held by another executor, taken over, lost).

``tools_metrics()`` creates them on its first call (from the composition root) in the
process-wide registry that ``/metrics`` serves; workers sharing a process share them. A
test that wants its own counts builds ``ToolsMetrics(CollectorRegistry())``."""

from __future__ import annotations

import functools

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

TOOL_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class ToolsMetrics:
    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.calls = Counter(
            "apex_tools_calls_total",
            "Tool calls run to an outcome, by tool and status (ok, error)",
            ["tool", "status"],
            registry=registry,
        )
        self.seconds = Histogram(
            "apex_tools_call_seconds",
            "Duration of a tool call, by tool",
            ["tool"],
            buckets=TOOL_SECONDS,
            registry=registry,
        )
        self.errors = Counter(
            "apex_tools_errors_total",
            "Tool calls completed with status error, by tool and error code",
            ["tool", "code"],
            registry=registry,
        )
        self.replayed = Counter(
            "apex_tools_ledger_answers_total",
            "Tool calls answered from the ledger (a redelivered call that already ran)",
            ["tool"],
            registry=registry,
        )
        self.claims = Counter(
            "apex_tools_claims_total",
            "What claiming a tool call met: claimed (it was free), waited (another executor "
            "held it), taken_over (that executor's lease had expired), lost (taken over while "
            "this executor ran it: its outcome was dropped)",
            ["outcome"],
            registry=registry,
        )
        self.retried = Counter(
            "apex_tools_dependency_retries_total",
            "Tool calls handed back for another delivery (a dependency was unavailable), by code",
            ["tool", "code"],
            registry=registry,
        )

    def call_done(self, tool: str, status: str, seconds: float, code: str | None) -> None:
        self.calls.labels(tool, status).inc()
        self.seconds.labels(tool).observe(seconds)
        if code is not None:
            self.errors.labels(tool, code).inc()


@functools.cache
def tools_metrics() -> ToolsMetrics:
    """The process's tools metrics, registered on first use."""
    return ToolsMetrics()
