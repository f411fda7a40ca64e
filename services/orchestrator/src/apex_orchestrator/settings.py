from __future__ import annotations

from pydantic import Field

from apex_orchestrator.admission import DoubleTexting
from apex_orchestrator.policy import RunLimits
from apex_runtime import ServiceSettings


class OrchestratorSettings(ServiceSettings):
    orchestrator_port: int = 8002
    orchestrator_max_runs: int = Field(default=200, ge=1, description="runs driven at once per replica")
    orchestrator_max_replicas: int = Field(
        default=10, ge=1, description="the autoscaler's maximum: sizes run.start's max_ack_pending"
    )
    # limits of one run
    run_timeout_s: float = Field(default=300.0, gt=0, description="wall-clock time from run.accepted")
    step_timeout_s: float = Field(default=120.0, gt=0, description="wall-clock time of one agent step")
    max_tool_calls: int = Field(default=50, ge=1)
    max_llm_tokens: int = Field(default=200_000, ge=1)
    # per user
    max_runs_per_user: int = Field(default=3, ge=1, description="runs of one user running at once")
    double_texting: DoubleTexting = Field(
        default=DoubleTexting.ENQUEUE, description="what a run beyond max_runs_per_user does"
    )
    # the sweeper of stopped runs
    stall_after_s: float = Field(
        default=120.0, gt=0, description="quiet time before a driverless run is ended"
    )
    sweep_every_s: float = Field(default=10.0, gt=0)
    sweep_lookback_s: float = Field(
        default=86_400.0, gt=0, description="how far back the sweeper reads at start"
    )
    # retries of a run.start whose handler raised (None: the consumer's own schedule)
    command_retry_backoff_s: tuple[float, ...] | None = None

    def limits(self) -> RunLimits:
        return RunLimits(
            run_timeout_s=self.run_timeout_s,
            step_timeout_s=self.step_timeout_s,
            max_tool_calls=self.max_tool_calls,
            max_llm_tokens=self.max_llm_tokens,
        )
