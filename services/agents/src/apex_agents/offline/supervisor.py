from __future__ import annotations

from apex_agents.context import StepContext
from apex_contracts.report import SupervisorOutput


class Supervisor:
    """Plans the run: triage, then the data helper, then reporting (always last)."""

    name = "supervisor"

    async def run(self, ctx: StepContext) -> tuple[SupervisorOutput, str]:
        follow_up = " It is a follow-up; earlier answers in this thread are in view." if ctx.history else ""
        await ctx.think(
            "Planning: triage will classify the question and check the data, the data helper "
            f"will gather the figures, reporting will write the answer.{follow_up}"
        )
        plan = SupervisorOutput(plan=["triage", "data_helper", "reporting"], note=follow_up.strip())
        return plan, "Planned triage, data helper, reporting"
