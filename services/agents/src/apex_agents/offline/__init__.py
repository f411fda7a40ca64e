"""The offline planner: the four agents decided by rules, with no language model."""

from apex_agents.offline.data_helper import DataHelper
from apex_agents.offline.reporting import Reporting
from apex_agents.offline.supervisor import Supervisor
from apex_agents.offline.triage import Triage

__all__ = ["DataHelper", "Reporting", "Supervisor", "Triage", "offline_agents"]


def offline_agents() -> dict[str, object]:
    return {a.name: a for a in (Supervisor(), Triage(), DataHelper(), Reporting())}
