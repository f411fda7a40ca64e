from __future__ import annotations

from pydantic import Field

from apex_orchestrator.policy import RunLimits
from apex_runtime import ServiceSettings


class OrchestratorSettings(ServiceSettings):
    orchestrator_port: int = 8002
    orchestrator_max_runs: int = Field(default=200, ge=1, description="runs driven at once per replica")
    run_timeout_s: float = Field(default=300.0, gt=0)
    step_timeout_s: float = Field(default=120.0, gt=0)
    max_tool_calls: int = Field(default=50, ge=1)
    max_llm_tokens: int = Field(default=200_000, ge=1)

    def limits(self) -> RunLimits:
        return RunLimits(
            run_timeout_s=self.run_timeout_s,
            step_timeout_s=self.step_timeout_s,
            max_tool_calls=self.max_tool_calls,
            max_llm_tokens=self.max_llm_tokens,
        )
