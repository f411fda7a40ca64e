"""The agents service's Prometheus metrics (``apex_agents_*``): steps by outcome and
their duration per agent and brain, language-model tokens and list-price cost, errors by
code.

``agents_metrics()`` creates them on its first call (from the composition root) in the
process-wide registry that ``/metrics`` serves; workers sharing a process share them. A
test that wants its own counts builds ``AgentsMetrics(CollectorRegistry())``."""

from __future__ import annotations

import functools

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

STEP_SECONDS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120)


class AgentsMetrics:
    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.steps = Counter(
            "apex_agents_steps_total",
            "Agent steps run, by agent and outcome (completed, failed, interrupted, retried)",
            ["agent", "outcome"],
            registry=registry,
        )
        self.step_seconds = Histogram(
            "apex_agents_step_seconds",
            "Duration of an agent step, by agent and brain (offline, llm)",
            ["agent", "brain"],
            buckets=STEP_SECONDS,
            registry=registry,
        )
        self.llm_tokens = Counter(
            "apex_agents_llm_tokens_total",
            "Language-model tokens spent, by agent and type (input, output)",
            ["agent", "type"],
            registry=registry,
        )
        self.llm_cost = Counter(
            "apex_agents_llm_cost_usd_total",
            "List-price cost of the language-model calls, in US dollars, by agent",
            ["agent"],
            registry=registry,
        )
        self.errors = Counter(
            "apex_agents_errors_total",
            "Agent steps that failed (agent_failed), by agent and error code",
            ["agent", "code"],
            registry=registry,
        )

    def step_done(
        self,
        agent: str,
        outcome: str,
        *,
        brain: str,
        seconds: float,
        input_tokens: int,
        output_tokens: int,
        cost_usd: float,
    ) -> None:
        """One step over, whatever its outcome: what it took and what it spent."""
        self.steps.labels(agent, outcome).inc()
        self.step_seconds.labels(agent, brain).observe(seconds)
        if input_tokens:
            self.llm_tokens.labels(agent, "input").inc(input_tokens)
        if output_tokens:
            self.llm_tokens.labels(agent, "output").inc(output_tokens)
        if cost_usd:
            self.llm_cost.labels(agent).inc(cost_usd)


@functools.cache
def agents_metrics() -> AgentsMetrics:
    """The process's agents metrics, registered on first use."""
    return AgentsMetrics()
