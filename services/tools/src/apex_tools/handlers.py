from __future__ import annotations

from faststream.nats import NatsRouter

from apex_contracts import ToolCall
from apex_contracts.streams import TOOL_CALL_CONSUMER, ConsumerSpec
from apex_runtime import InboundMessage, keep_alive, subscribe_command
from apex_runtime.consumers import heartbeat_every
from apex_tools.executor import ToolExecutor


def build_router(
    executor: ToolExecutor, max_workers: int, consumer: ConsumerSpec = TOOL_CALL_CONSUMER
) -> NatsRouter:
    router = NatsRouter()

    @subscribe_command(
        router,
        consumer,
        max_workers=max_workers,
        title="tool.call",
        description="Runs one typed tool call; a completed call id is answered from the ledger.",
    )
    async def on_tool_call(command: ToolCall, msg: InboundMessage) -> None:
        # a tool may run longer than the ack wait: heartbeat so it is not handed to another
        async with keep_alive(msg.in_progress, heartbeat_every(TOOL_CALL_CONSUMER)):
            await executor.handle(command, headers=msg.headers)
        await msg.ack()

    return router
