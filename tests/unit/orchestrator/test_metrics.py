"""The orchestrator counts every ending by status (and failures by code), and the
process-wide metrics are created once however many orchestrators share the process."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from apex_contracts import (
    ErrorInfo,
    RunCancelled,
    RunCancelledData,
    RunCompleted,
    RunCompletedData,
    RunFailed,
    RunFailedData,
    Scope,
    new_id,
)
from apex_orchestrator.metrics import OrchestratorMetrics, orchestrator_metrics, terminal_status

TERMINAL_ID = "terminal"
SCOPE = Scope(tenant_id=new_id("ten"), user_id=new_id("usr"), thread_id=new_id("thr"), run_id=new_id("run"))


def _failed(code: str, duration_ms: int) -> RunFailed:
    error = ErrorInfo(code=code, message="x", retryable=False)
    return SCOPE.make(RunFailed, RunFailedData(error=error, duration_ms=duration_ms), id=TERMINAL_ID)


def test_endings_are_counted_by_status_and_failures_by_code() -> None:
    registry = CollectorRegistry()
    metrics = OrchestratorMetrics(registry)
    completed = SCOPE.make(
        RunCompleted,
        # the response (a whole report) plays no part in what is counted
        RunCompletedData.model_construct(status="needs_data", duration_ms=1500),
        id=TERMINAL_ID,
    )
    metrics.run_ended(completed)
    metrics.run_ended(_failed("run_timeout", 300_000))
    metrics.run_ended(_failed("concurrency_limit", 0))
    metrics.run_ended(
        SCOPE.make(RunCancelled, RunCancelledData(cause="user", duration_ms=200), id=TERMINAL_ID)
    )

    def value(name: str, **labels: str) -> float:
        return registry.get_sample_value(name, labels) or 0.0

    assert value("apex_orchestrator_runs_ended_total", status="needs_data") == 1
    assert value("apex_orchestrator_runs_ended_total", status="failed") == 2
    assert value("apex_orchestrator_runs_ended_total", status="cancelled") == 1
    assert value("apex_orchestrator_run_errors_total", code="run_timeout") == 1
    assert value("apex_orchestrator_run_errors_total", code="concurrency_limit") == 1
    # a run that was never accepted has no duration to observe
    assert value("apex_orchestrator_run_duration_seconds_count", status="failed") == 1
    assert value("apex_orchestrator_run_duration_seconds_sum", status="needs_data") == 1.5
    assert terminal_status(completed) == ("needs_data", None)


def test_the_process_metrics_are_made_once() -> None:
    assert orchestrator_metrics() is orchestrator_metrics()
