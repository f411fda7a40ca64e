from __future__ import annotations

from pydantic import Field, SecretStr

from apex_runtime import ServiceSettings


class AgentsSettings(ServiceSettings):
    agents_port: int = 8003
    agents_max_concurrent: int = Field(default=64, ge=1, description="agent steps at once per replica")
    agents_max_replicas: int = Field(
        default=20, ge=1, description="the autoscaler's maximum: sizes the consumer's max_ack_pending"
    )
    # long enough for a tool call whose worker died to be redelivered (ack wait, 10 s), its
    # claim's lease to expire (APEX_TOOLS_LEASE_S, 20 s) and the call to run
    tool_wait_s: float = Field(default=40.0, gt=0, description="how long a step waits for one tool call")
    llm_base_url: str | None = None
    llm_model: str | None = None
    llm_api_key: SecretStr | None = None
    llm_max_tokens: int | None = Field(
        default=None, ge=16, description="max_tokens sent with each request (unset: the server's default)"
    )
    llm_timeout_s: float = Field(default=20.0, gt=0, description="one language-model attempt")
    llm_max_attempts: int = Field(default=3, ge=1, le=10)
    llm_backoff_s: float = Field(default=0.5, ge=0)
    llm_breaker_threshold: int = Field(default=3, ge=1, description="failed attempts that open the breaker")
    llm_breaker_reset_s: float = Field(default=30.0, gt=0)
