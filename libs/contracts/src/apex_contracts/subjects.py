"""Every subject name, built from validated ids only.

Commands ``apex.cmd.<name>``; events ``apex.evt.<tenant>.<user>.<thread>``; reads
``apex.q.<name>`` (request/reply); heartbeats ``apex.health.<service>.<instance>``;
control broadcasts ``apex.ctl.*`` (core NATS, lost when nobody listens, never the only
record of a fact).
"""

from __future__ import annotations

import re
from typing import Final

from apex_contracts.errors import InvalidInput
from apex_contracts.ids import validate_id

CMD_PREFIX: Final = "apex.cmd"
EVT_PREFIX: Final = "apex.evt"

CMD_RUN_START: Final = "apex.cmd.run.start"
CMD_RUN_CANCEL: Final = "apex.cmd.run.cancel"
CMD_AGENT_STEP: Final = "apex.cmd.agent.step"
CMD_TOOL_CALL: Final = "apex.cmd.tool.call"
# Usage batches go to ``apex.cmd.usage.ingest.<tenant>``: a tenant's batches not yet
# stored can be read by subject (the duplicate check of the next upload needs them).
CMD_USAGE_INGEST: Final = "apex.cmd.usage.ingest"
CMD_USAGE_INGEST_ALL: Final = "apex.cmd.usage.ingest.*"
COMMAND_SUBJECTS: Final = (
    CMD_RUN_START,
    CMD_RUN_CANCEL,
    CMD_AGENT_STEP,
    CMD_TOOL_CALL,
    CMD_USAGE_INGEST,
)
DEAD_LETTER_PREFIX: Final = "apex.dlq"

EVT_ALL: Final = "apex.evt.>"
HEALTH_ALL: Final = "apex.health.>"
CTL_CANCEL_ALL: Final = "apex.ctl.cancel.*"
CTL_SESSION_REVOKED: Final = "apex.ctl.session.revoked"

_TOKEN_RE = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")


def thread_events(tenant_id: str, user_id: str, thread_id: str) -> str:
    """The one subject holding every event of a thread."""
    return (
        f"{EVT_PREFIX}.{validate_id(tenant_id, 'ten')}."
        f"{validate_id(user_id, 'usr')}.{validate_id(thread_id, 'thr')}"
    )


def user_events(tenant_id: str, user_id: str) -> str:
    """Wildcard over every thread of one user."""
    return f"{EVT_PREFIX}.{validate_id(tenant_id, 'ten')}.{validate_id(user_id, 'usr')}.*"


def tenant_events(tenant_id: str) -> str:
    return f"{EVT_PREFIX}.{validate_id(tenant_id, 'ten')}.>"


def usage_ingest(tenant_id: str) -> str:
    """Where a tenant's usage batches wait to be stored."""
    return f"{CMD_USAGE_INGEST}.{validate_id(tenant_id, 'ten')}"


def query(name: str) -> str:
    """Read API subject, e.g. ``query('threads.list')`` -> ``apex.q.threads.list``."""
    if not all(_TOKEN_RE.match(part) for part in name.split(".")):
        raise InvalidInput(f"bad query name {name!r}")
    return f"apex.q.{name}"


def health(service: str, instance: str) -> str:
    if not (_TOKEN_RE.match(service) and _TOKEN_RE.match(instance)):
        raise InvalidInput(f"bad health subject parts {service!r}, {instance!r}")
    return f"apex.health.{service}.{instance}"


def cancel_broadcast(run_id: str) -> str:
    return f"apex.ctl.cancel.{validate_id(run_id, 'run')}"


def dead_letter(command_subject: str) -> str:
    return f"{DEAD_LETTER_PREFIX}.{command_subject.removeprefix(CMD_PREFIX + '.')}"


def parse_thread_subject(subject: str) -> tuple[str, str, str]:
    """(tenant, user, thread) of an event subject; raises InvalidInput when it is not one."""
    parts = subject.split(".")
    if len(parts) != 5 or parts[:2] != ["apex", "evt"]:
        raise InvalidInput(f"{subject!r} is not a thread event subject")
    return (
        validate_id(parts[2], "ten"),
        validate_id(parts[3], "usr"),
        validate_id(parts[4], "thr"),
    )
