from __future__ import annotations

from apex_agents.context import StepContext
from apex_contracts.envelope import AgentName
from apex_contracts.report import SupervisorOutput

PLAN: list[AgentName] = ["triage", "data_helper", "reporting"]


class Supervisor:
    """Plans the run: triage, then the data helper, whose analyses run in parallel, then
    reporting, which always runs last. A follow-up keeps the thread's earlier turns in
    view (the orchestrator passes them as ``history``)."""

    name = "supervisor"

    async def run(self, ctx: StepContext) -> tuple[SupervisorOutput, str]:
        follow_up = ""
        if ctx.history:
            follow_up = f" It follows up on: \u201c{ctx.history[-1].get('question', '')[:120]}\u201d."
        await ctx.think(
            "Planning: triage will classify the question and check the data, the data helper "
            f"will run the analyses it needs in parallel, reporting will write the answer.{follow_up}"
        )
        return SupervisorOutput(plan=PLAN, note=follow_up.strip()), "Planned triage, data helper, reporting"
