from __future__ import annotations

from faststream.nats import NatsMessage, NatsRouter

from apex_contracts import ToolCall
from apex_contracts.streams import TOOL_CALL_CONSUMER
from apex_runtime import subscribe_command
from apex_tools.executor import ToolExecutor


def build_router(executor: ToolExecutor, max_workers: int) -> NatsRouter:
    router = NatsRouter()

    @subscribe_command(
        router,
        TOOL_CALL_CONSUMER,
        max_workers=max_workers,
        title="tool.call",
        description="Runs one typed tool call; a completed call id is answered from the ledger.",
    )
    async def on_tool_call(command: ToolCall, msg: NatsMessage) -> None:
        await executor.handle(command)
        await msg.ack()

    return router
