from __future__ import annotations

from pydantic import Field

from apex_runtime import ServiceSettings


class ToolsSettings(ServiceSettings):
    tools_port: int = 8004
    tools_max_concurrent: int = Field(default=32, ge=1, description="tool calls at once per replica")
    tools_max_replicas: int = Field(
        default=20, ge=1, description="the autoscaler's maximum: sizes the consumer's max_ack_pending"
    )
    tools_query_timeout_s: float = Field(default=10.0, gt=0)
    tools_lease_s: float = Field(
        default=20.0,
        gt=0,
        description="a claimed tool call is taken over by another executor once its claim went unrenewed this long",
    )
