"""What each internal service may do on the bus: the publish and subscribe allow-lists
of its NATS user (``apex up`` and the deployments issue one user per service).

Derived from the code: the subjects of ``apex_contracts.subjects`` each service sends
and reads, the durable consumers of ``apex_contracts.streams`` it binds, the key-value
buckets it uses, and the JetStream API subjects (``$JS.API.…``) those calls make. What
no service needs is refused by the NATS server itself: stream and consumer deletion
(beyond the ephemeral consumers a reader creates), purges outside the erasure paths,
another service's commands. Replies to requests (queries, the JetStream API) arrive on
``_INBOX.>``; a service that answers requests may publish only to the reply subject of
a request it received (the ``resp`` permission), never to an arbitrary inbox."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from apex_contracts import busapi, subjects
from apex_contracts.pricing import KV_PRICE_OVERRIDES
from apex_contracts.streams import (
    AGENT_STEP_CONSUMER,
    APEX_AUDIT,
    APEX_CMD,
    APEX_DLQ,
    APEX_EVT,
    KV_CONNECTORS,
    KV_IDEMPOTENCY,
    KV_LEASES,
    KV_RUNS,
    KV_TOOL_LEDGER,
    KV_USER_RUNS,
    KV_VERSIONS,
    KV_WS_TICKETS,
    RETIRED_CONSUMERS,
    RUN_CANCEL_CONSUMER,
    RUN_START_CONSUMER,
    STREAMS,
    TOOL_CALL_CONSUMER,
    USAGE_INGEST_CONSUMER,
    ConsumerSpec,
)

ALL_BUCKETS: Final = (
    KV_IDEMPOTENCY,
    KV_RUNS,
    KV_TOOL_LEDGER,
    KV_WS_TICKETS,
    KV_USER_RUNS,
    KV_PRICE_OVERRIDES,
    KV_LEASES,
    KV_CONNECTORS,
    KV_VERSIONS,
)
SERVICES: Final = ("gateway", "auth", "orchestrator", "agents", "tools", "persistence", "ingest")
INBOX: Final = "_INBOX.>"
_ANY_TENANT_AUDIT: Final = "apex.audit.*"  # audit_subject(<tenant>)


@dataclass(frozen=True)
class BusPermissions:
    """A NATS user's allow-lists; ``deny_publish`` wins over ``publish``; ``respond``:
    may answer requests it receives."""

    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    respond: bool = False
    deny_publish: tuple[str, ...] = ()


def _topology() -> list[str]:
    """Every service ensures the streams and buckets at start (create, update, info)."""
    names = [spec.name for spec in STREAMS] + [f"KV_{bucket}" for bucket in ALL_BUCKETS]
    out = ["$JS.API.INFO", "$JS.API.STREAM.NAMES"]
    for name in names:
        out += [f"$JS.API.STREAM.{verb}.{name}" for verb in ("CREATE", "UPDATE", "INFO")]
    return out


def _read(stream: str) -> list[str]:
    """Reading a stream by subject: direct and leader gets, ordered (ephemeral)
    consumers the reader creates, pulls from and deletes."""
    return [
        f"$JS.API.DIRECT.GET.{stream}",
        f"$JS.API.DIRECT.GET.{stream}.>",
        f"$JS.API.STREAM.MSG.GET.{stream}",
        f"$JS.API.CONSUMER.CREATE.{stream}",
        f"$JS.API.CONSUMER.CREATE.{stream}.>",
        f"$JS.API.CONSUMER.DELETE.{stream}.*",
        f"$JS.API.CONSUMER.MSG.NEXT.{stream}.*",
        f"$JS.API.CONSUMER.INFO.{stream}.*",
        "$JS.FC.>",
    ]


def _kv(*buckets: str) -> list[str]:
    out = []
    for bucket in buckets:
        out += [f"$KV.{bucket}.>", *_read(f"KV_{bucket}")]
    return out


def _consume(*specs: ConsumerSpec) -> list[str]:
    """Binding a durable consumer: create it (from its spec), read its info, pull, ack;
    for a command, also dead-lettering it (the poison guard's ``apex.dlq.<command>``)."""
    out = []
    for spec in specs:
        out += [
            f"$JS.API.CONSUMER.CREATE.{spec.stream}.{spec.durable}",
            f"$JS.API.CONSUMER.CREATE.{spec.stream}.{spec.durable}.>",
            f"$JS.API.CONSUMER.DURABLE.CREATE.{spec.stream}.{spec.durable}",
            f"$JS.API.CONSUMER.INFO.{spec.stream}.{spec.durable}",
            f"$JS.API.CONSUMER.MSG.NEXT.{spec.stream}.{spec.durable}",
            f"$JS.ACK.{spec.stream}.{spec.durable}.>",
        ]
        if spec.stream == APEX_CMD.name:
            out.append(subjects.dead_letter(spec.filter_subject))
    return out


def _health(service: str) -> list[str]:
    return [f"apex.health.{service}.*"]


def _dedupe(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def service_permissions(service: str) -> BusPermissions:
    """The allow-lists of ``service``'s NATS user."""
    common = [*_topology(), *_health(service)]
    evt_read = _read(APEX_EVT.name)
    match service:
        case "gateway":
            publish = [
                subjects.CMD_RUN_START,
                subjects.CMD_RUN_CANCEL,
                subjects.EVT_ALL,  # run.queued and user messages are written by the gateway
                "apex.q.>",
                _ANY_TENANT_AUDIT,
                subjects.CTL_CANCEL_ALL,
                *evt_read,
                *_read(APEX_CMD.name),
                *_kv(KV_IDEMPOTENCY, KV_RUNS, KV_WS_TICKETS, KV_USER_RUNS, KV_PRICE_OVERRIDES),
                # erasing a user purges their keys from the buckets' streams, by subject
                *(f"$JS.API.STREAM.PURGE.KV_{b}" for b in (KV_IDEMPOTENCY, KV_RUNS, KV_USER_RUNS)),
                "$JS.API.CONSUMER.INFO.*.*",  # the dashboard's consumer figures
            ]
            subscribe = [
                INBOX,
                subjects.HEALTH_ALL,
                subjects.CTL_SESSION_REVOKED,
                subjects.EVT_ALL,
                # the bus API: service accounts' requests, answered on their reply subject
                busapi.any_principal(busapi.OP_MESSAGE_SEND),
                busapi.any_principal(busapi.OP_RUN_CANCEL),
            ]
            respond = True
        case "auth":
            publish = [_ANY_TENANT_AUDIT, subjects.CTL_SESSION_REVOKED, subjects.EVT_ALL]
            subscribe = [INBOX]
            respond = False
        case "orchestrator":
            publish = [
                subjects.CMD_AGENT_STEP,
                subjects.CMD_RUN_START,  # a queued run is started again when admitted
                subjects.EVT_ALL,
                subjects.CTL_CANCEL_ALL,
                "apex.q.>",
                *evt_read,
                # the sweeper asks which runs still have their run.start (direct gets only)
                f"$JS.API.DIRECT.GET.{APEX_CMD.name}",
                f"$JS.API.DIRECT.GET.{APEX_CMD.name}.>",
                *_consume(RUN_START_CONSUMER, RUN_CANCEL_CONSUMER),
                *_kv(KV_USER_RUNS, KV_RUNS, KV_IDEMPOTENCY),
            ]
            subscribe = [INBOX, subjects.CTL_CANCEL_ALL, subjects.EVT_ALL]
            respond = False
        case "agents":
            publish = [
                subjects.CMD_TOOL_CALL,
                subjects.EVT_ALL,
                "apex.q.>",
                *evt_read,
                *_consume(AGENT_STEP_CONSUMER),
                *_kv(KV_RUNS),
            ]
            subscribe = [INBOX, subjects.CTL_CANCEL_ALL, subjects.EVT_ALL]
            respond = False
        case "tools":
            publish = [
                subjects.EVT_ALL,
                "apex.q.>",
                *evt_read,
                *_consume(TOOL_CALL_CONSUMER),
                *_kv(KV_TOOL_LEDGER, KV_PRICE_OVERRIDES, KV_RUNS),
            ]
            subscribe = [INBOX, subjects.CTL_CANCEL_ALL]
            respond = False
        case "persistence":
            publish = [
                f"{subjects.DEAD_LETTER_PREFIX}.>",
                subjects.EVT_ALL,  # erasure tombstones
                _ANY_TENANT_AUDIT,
                "apex.ctl.persistence.progress.*",  # a rebuild's progress, to its requester
                *evt_read,
                *_read(APEX_AUDIT.name),
                *_read(APEX_DLQ.name),
                *_consume(USAGE_INGEST_CONSUMER),
                # the projectors follow APEX_EVT and APEX_AUDIT with ordered consumers (the
                # two reads) and delete the durables they used to pull from
                # erasure: the erased user's events and audit entries leave the log
                f"$JS.API.STREAM.PURGE.{APEX_EVT.name}",
                f"$JS.API.STREAM.PURGE.{APEX_AUDIT.name}",
                f"$JS.API.STREAM.MSG.DELETE.{APEX_EVT.name}",
                f"$JS.API.STREAM.MSG.DELETE.{APEX_AUDIT.name}",
                *_kv(KV_LEASES, KV_VERSIONS),
            ]
            subscribe = [INBOX, "apex.q.>", "apex.ctl.persistence.rebuild", "apex.health.persistence.*"]
            respond = True
        case "ingest":
            publish = [
                subjects.CMD_USAGE_INGEST_ALL,
                "apex.q.>",
                *_read(APEX_CMD.name),
                *_kv(KV_LEASES, KV_CONNECTORS),
            ]
            subscribe = [INBOX, subjects.CTL_SESSION_REVOKED, busapi.any_principal(busapi.OP_USAGE_INGEST)]
            respond = True
        case _:
            raise ValueError(f"no bus permissions for service {service!r}; known: {SERVICES}")
    return BusPermissions(publish=_dedupe([*common, *publish]), subscribe=_dedupe(subscribe), respond=respond)


def service_account_permissions(tenant_id: str, user_id: str) -> BusPermissions:
    """A tenant's service account: requests on its own ``apex.api.<tenant>.<user>.>``,
    its threads' events on ``apex.evt.<tenant>.<user>.>`` (a core subscription, or an
    ordered consumer of ``APEX_EVT`` created through the API subject that carries that
    filter: the server checks the request's filter against the subject), replies and
    deliveries under its own inbox prefix only (``_INBOX.>`` would let it read every
    other client's replies). The names of the projectors' retired durables on ``APEX_EVT``
    are denied: persistence deletes consumers of those names when it starts. Nothing else: no other tenant or user, no command, no stream
    or consumer management beyond that one create."""
    events = subjects.user_events(tenant_id, user_id).removesuffix(".*") + ".>"
    evt = APEX_EVT.name
    return BusPermissions(
        publish=(
            f"{busapi.API_PREFIX}.{tenant_id}.{user_id}.>",
            f"$JS.API.CONSUMER.CREATE.{evt}.*.{events}",
            f"$JS.FC.{evt}.>",  # an ordered consumer's flow-control answers
        ),
        subscribe=(f"{busapi.inbox_prefix(user_id)}.>", events),
        deny_publish=tuple(
            f"$JS.API.CONSUMER.CREATE.{stream}.{durable}.>"
            for stream, durable in RETIRED_CONSUMERS
            if stream == evt
        ),
    )
