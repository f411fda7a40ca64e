"""The orchestrator: drives each run as a state machine rebuilt from its own events."""

from apex_orchestrator.driver import RunDriver
from apex_orchestrator.policy import RunLimits, next_action
from apex_orchestrator.state import RunState

__all__ = ["RunDriver", "RunLimits", "RunState", "next_action"]
