from __future__ import annotations

from faststream.nats import NatsMessage, NatsRouter

from apex_agents.stepper import StepRunner
from apex_contracts import AgentStep
from apex_contracts.streams import AGENT_STEP_CONSUMER, ConsumerSpec
from apex_runtime import InboundMessage, subscribe_command


def build_router(
    runner: StepRunner, max_workers: int, consumer: ConsumerSpec = AGENT_STEP_CONSUMER
) -> NatsRouter:
    router = NatsRouter()

    @subscribe_command(
        router,
        consumer,
        max_workers=max_workers,
        title="agent.step",
        description="Runs one agent step; a step whose outcome is already recorded is skipped.",
    )
    async def on_agent_step(command: AgentStep, msg: InboundMessage) -> None:
        await runner.run(command, keepalive=msg.in_progress, headers=msg.headers, attempt=_delivery(msg))
        await msg.ack()

    return router


def _delivery(msg: NatsMessage) -> int:
    """How many times JetStream has delivered this command (1 the first time)."""
    metadata = getattr(msg.raw_message, "metadata", None)
    return max(1, int(getattr(metadata, "num_delivered", 1) or 1))
