"""Which brain the agents run on: the offline planner (the default, deterministic), or a
language model at an OpenAI-compatible endpoint (``APEX_LLM_BASE_URL`` and
``APEX_LLM_MODEL`` set) that falls back to the offline planner when it fails."""

from __future__ import annotations

from typing import Any

import httpx

from apex_agents.llm.agents import llm_agents
from apex_agents.llm.client import Breakers, ChatClient, LlmConfig
from apex_agents.offline import offline_agents
from apex_agents.settings import AgentsSettings
from apex_runtime import CircuitBreaker


def llm_config(settings: AgentsSettings) -> LlmConfig | None:
    if not settings.llm_base_url or not settings.llm_model:
        return None
    return LlmConfig(
        base_url=settings.llm_base_url,
        model=settings.llm_model,
        api_key=settings.llm_api_key.get_secret_value() if settings.llm_api_key else None,
        timeout_s=settings.llm_timeout_s,
        max_tokens=settings.llm_max_tokens,
        max_attempts=settings.llm_max_attempts,
        backoff_s=settings.llm_backoff_s,
        breaker_threshold=settings.llm_breaker_threshold,
        breaker_reset_s=settings.llm_breaker_reset_s,
    )


def build_agents(
    settings: AgentsSettings, http: httpx.AsyncClient, breaker: CircuitBreaker | None = None
) -> dict[str, Any]:
    """The agents of the configured brain; ``breaker`` (the host's, visible on /metrics)
    guards the configured provider."""
    offline = offline_agents()
    config = llm_config(settings)
    if config is None:
        return offline
    breakers = Breakers(config.breaker_threshold, config.breaker_reset_s)
    if breaker is not None:
        breakers.use(config.provider, breaker)
    return llm_agents(ChatClient(config, http, breakers), offline)
