"""The agents service: supervisor, triage, data_helper and reporting, one step at a time."""

from apex_agents.context import StepContext
from apex_agents.offline import offline_agents
from apex_agents.stepper import Agent, StepRunner

__all__ = ["Agent", "StepContext", "StepRunner", "offline_agents"]
