"""The orchestrator: drives each run as a state machine rebuilt from its own events."""

from apex_contracts.dedupe_ids import terminal_id
from apex_orchestrator.admission import DoubleTexting, UserSlots
from apex_orchestrator.driver import Admission, RunDriver
from apex_orchestrator.endings import RunEndings
from apex_orchestrator.policy import RunLimits, next_action
from apex_orchestrator.state import RunState
from apex_orchestrator.sweeper import Sweeper

__all__ = [
    "Admission",
    "DoubleTexting",
    "RunDriver",
    "RunEndings",
    "RunLimits",
    "RunState",
    "Sweeper",
    "UserSlots",
    "next_action",
    "terminal_id",
]
