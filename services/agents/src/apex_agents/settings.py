from __future__ import annotations

from pydantic import Field, SecretStr

from apex_runtime import ServiceSettings


class AgentsSettings(ServiceSettings):
    agents_port: int = 8003
    agents_max_concurrent: int = Field(default=64, ge=1, description="agent steps at once per replica")
    tool_wait_s: float = Field(default=20.0, gt=0, description="how long a step waits for one tool call")
    llm_base_url: str | None = None
    llm_model: str | None = None
    llm_api_key: SecretStr | None = None
