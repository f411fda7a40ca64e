"""JetStream streams, durable consumers, what the projections follow and key-value
buckets, as plain data.

Whichever service starts first creates them (idempotently); the runtime turns these
specs into nats-py configs so this package stays free of the client library.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Final, Literal

from apex_contracts import subjects

DAY: Final = 86_400.0


@dataclass(frozen=True, slots=True)
class StreamSpec:
    name: str
    subjects: tuple[str, ...]
    retention: Literal["limits", "workqueue"]
    max_age_s: float = 0.0
    max_bytes: int = -1
    duplicate_window_s: float = 120.0
    allow_direct: bool = True
    # consumers the stream may have at once (0: NATS's default, 1,000 per stream)
    max_consumers: int = 0


@dataclass(frozen=True, slots=True)
class ConsumerSpec:
    """A durable pull consumer. ``ack_wait_s`` is how long a silent handler keeps a
    message before it is redelivered; long handlers heartbeat (in-progress acks) every
    fifth of it, so a worker that dies is replaced within ``ack_wait_s``. A message that
    failed ``max_deliver`` times (or whose workers died that often) is dead-lettered;
    ``backoff_s`` spaces the retries of a handler that raised (the last value repeats)."""

    durable: str
    stream: str
    filter_subject: str
    ack_wait_s: float = 30.0
    max_deliver: int = 5
    max_ack_pending: int = 1000
    backoff_s: tuple[float, ...] = field(default=())


def with_capacity(spec: ConsumerSpec, *, per_replica: int, replicas: int) -> ConsumerSpec:
    """``spec`` with ``max_ack_pending`` sized to what the workers can hold at once: each
    replica takes up to ``per_replica`` messages, and at most ``replicas`` replicas run
    (the autoscaler's maximum). A fixed cap would hold back work that idle replicas could
    take (or let a few replicas hoard more than they can run)."""
    return replace(spec, max_ack_pending=max(1, per_replica) * max(1, replicas))


APEX_CMD: Final = StreamSpec(name="APEX_CMD", subjects=(f"{subjects.CMD_PREFIX}.>",), retention="workqueue")
APEX_EVT: Final = StreamSpec(
    name="APEX_EVT",
    subjects=(subjects.EVT_ALL,),
    retention="limits",
    max_age_s=30 * DAY,
    # ordered consumers: one per run in flight (its driver), one per run with a step in
    # the last seconds per agents replica, one per watched thread per gateway replica
    max_consumers=100_000,
)
APEX_DLQ: Final = StreamSpec(
    name="APEX_DLQ",
    subjects=(f"{subjects.DEAD_LETTER_PREFIX}.>",),
    retention="limits",
    max_age_s=30 * DAY,
)
APEX_AUDIT: Final = StreamSpec(
    name="APEX_AUDIT",
    subjects=("apex.audit.>",),
    retention="limits",
    max_age_s=400 * DAY,
)
STREAMS: Final = (APEX_CMD, APEX_EVT, APEX_DLQ, APEX_AUDIT)

RUN_START_CONSUMER: Final = ConsumerSpec(
    durable="orchestrator-run-start",
    stream=APEX_CMD.name,
    filter_subject=subjects.CMD_RUN_START,
    ack_wait_s=10.0,
    max_deliver=10,
    backoff_s=(0.2, 1.0, 3.0, 10.0),
)
RUN_CANCEL_CONSUMER: Final = ConsumerSpec(
    durable="orchestrator-run-cancel", stream=APEX_CMD.name, filter_subject=subjects.CMD_RUN_CANCEL
)
AGENT_STEP_CONSUMER: Final = ConsumerSpec(
    durable="agents-step",
    stream=APEX_CMD.name,
    filter_subject=subjects.CMD_AGENT_STEP,
    ack_wait_s=10.0,
    max_deliver=5,
    backoff_s=(0.2, 1.0, 3.0, 10.0),
)
TOOL_CALL_CONSUMER: Final = ConsumerSpec(
    durable="tools-call",
    stream=APEX_CMD.name,
    filter_subject=subjects.CMD_TOOL_CALL,
    ack_wait_s=10.0,
    max_deliver=6,
    # a store behind a tool restarting (persistence) is waited out: ~15 s of retries
    backoff_s=(0.5, 1.0, 2.0, 4.0, 8.0),
)
# A new durable name: JetStream keeps a durable's filter, and the batches moved from
# ``apex.cmd.usage.ingest`` to one subject per tenant.
USAGE_INGEST_CONSUMER: Final = ConsumerSpec(
    durable="persistence-usage-batches",
    stream=APEX_CMD.name,
    filter_subject=subjects.CMD_USAGE_INGEST_ALL,
    ack_wait_s=60.0,
    max_deliver=-1,
)


# What each read model of persistence is projected from: an ordered consumer of the
# subject's stream, from the store's own checkpoint, by one replica at a time (the lease
# ``projector.<store>``); nothing is acknowledged (persistence's ``projection/runner.py``).
PROJECTED: Final = {
    "postgres": subjects.EVT_ALL,
    "redis": subjects.EVT_ALL,
    "clickhouse": subjects.EVT_ALL,
    "audit": "apex.audit.>",
}
# The durable consumers the projectors read before they followed the log (deleted when
# persistence starts; their names stay out of reach of a tenant's consumer creates).
RETIRED_CONSUMERS: Final = (
    (APEX_EVT.name, "persistence-postgres"),
    (APEX_EVT.name, "persistence-redis"),
    (APEX_EVT.name, "persistence-clickhouse"),
    (APEX_AUDIT.name, "persistence-audit"),
)

KV_IDEMPOTENCY: Final = "apex_idempotency"
KV_RUNS: Final = "apex_runs"
KV_TOOL_LEDGER: Final = "apex_tool_ledger"
KV_WS_TICKETS: Final = "apex_ws_tickets"
# <tenant>.<user> -> the user's admitted and queued runs (per-user concurrency, double-texting)
KV_USER_RUNS: Final = "apex_user_runs"
# name -> holder and expiry: one holder at a time across replicas (``apex_runtime.leases``)
KV_LEASES: Final = "apex_leases"
# <tenant>.<provider> -> a provider usage connector: its sealed admin key and sync state
KV_CONNECTORS: Final = "apex_connectors"
# what persistence keeps answers for -> nothing: the key's revision is its version, bumped
# by every change (``usage.<tenant>``: the tenant's usage rows; ``erasures``: the analytics
# tombstones; persistence's ``analytics/versions.py``)
KV_VERSIONS: Final = "apex_versions"
