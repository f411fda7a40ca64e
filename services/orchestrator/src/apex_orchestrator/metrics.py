"""The orchestrator's Prometheus metrics (``apex_orchestrator_*``): runs started and
ended, their duration and time to first event (the service levels users feel), steps
dispatched and commands redelivered.

``orchestrator_metrics()`` creates them on its first call (from the composition root) in
the process-wide registry that ``/metrics`` serves; orchestrators sharing a process (the
tests' replicas) share them. A test that wants its own counts builds
``OrchestratorMetrics(CollectorRegistry())``."""

from __future__ import annotations

import functools

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

from apex_contracts import ThreadEvent

# seconds; a run takes seconds with the offline planner, up to minutes with a model
RUN_SECONDS = (0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)
FIRST_EVENT_SECONDS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30)


class OrchestratorMetrics:
    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.runs_started = Counter(
            "apex_orchestrator_runs_started_total",
            "Runs accepted (run.accepted appended)",
            registry=registry,
        )
        self.runs_ended = Counter(
            "apex_orchestrator_runs_ended_total",
            "Runs ended, by terminal status (completed, needs_data, failed, cancelled)",
            ["status"],
            registry=registry,
        )
        self.run_errors = Counter(
            "apex_orchestrator_run_errors_total",
            "Runs ended with run.failed, by error code",
            ["code"],
            registry=registry,
        )
        self.run_seconds = Histogram(
            "apex_orchestrator_run_duration_seconds",
            "From run.accepted to the terminal event (duration_ms of the terminal event)",
            ["status"],
            buckets=RUN_SECONDS,
            registry=registry,
        )
        self.first_event_seconds = Histogram(
            "apex_orchestrator_time_to_first_event_seconds",
            "From the user's message (run.start) to the run's first agent_started",
            buckets=FIRST_EVENT_SECONDS,
            registry=registry,
        )
        self.steps_dispatched = Counter(
            "apex_orchestrator_steps_dispatched_total",
            "agent.step commands sent, by agent",
            ["agent"],
            registry=registry,
        )
        self.redeliveries = Counter(
            "apex_orchestrator_redeliveries_total",
            "Commands received again (their earlier delivery was not acknowledged), by command",
            ["command"],
            registry=registry,
        )

    def run_ended(self, event: ThreadEvent) -> None:
        """Counts a terminal event the orchestrator recorded."""
        status, code = terminal_status(event)
        self.runs_ended.labels(status).inc()
        if code is not None:
            self.run_errors.labels(code).inc()
        duration_ms = getattr(event.data, "duration_ms", 0)
        if duration_ms:  # 0: the run was never accepted (rejected, cancelled in the queue)
            self.run_seconds.labels(status).observe(duration_ms / 1000)


def terminal_status(event: ThreadEvent) -> tuple[str, str | None]:
    """(status, error code) of a terminal event: ``completed``/``needs_data`` for
    run.completed, ``failed`` with its code, ``cancelled``."""
    if event.type == "run.completed":
        return str(getattr(event.data, "status", "completed")), None
    if event.type == "run.failed":
        return "failed", str(event.data.error.code)  # type: ignore[attr-defined]
    return "cancelled", None


@functools.cache
def orchestrator_metrics() -> OrchestratorMetrics:
    """The process's orchestrator metrics, registered on first use."""
    return OrchestratorMetrics()
