"""The bus API: what a tenant's service account may do on NATS, and the HTTP bodies that
create, list and revoke service accounts.

A service account is a principal of its tenant with its own ``user_id``. Its NATS user
may request on ``apex.api.<tenant_id>.<user_id>.<operation>`` (the operations below,
answered with the same frames as the WebSocket and ``POST /api/v1/usage``), read its
threads' events on ``apex.evt.<tenant_id>.<user_id>.>``, and receive replies on its own
inbox prefix ``_INBOX.<user_id>`` (a client sets it as its inbox prefix: nats-py
``inbox_prefix``, nats.js ``inboxPrefix``); the NATS server refuses everything else.
See docs/bus-api.md."""

from __future__ import annotations

from datetime import datetime
from typing import Final, Literal

from pydantic import Field

from apex_contracts.envelope import Model
from apex_contracts.errors import InvalidInput
from apex_contracts.frames import UserText
from apex_contracts.ids import validate_id

API_PREFIX: Final = "apex.api"
OP_MESSAGE_SEND: Final = "message.send"
OP_RUN_CANCEL: Final = "run.cancel"
OP_USAGE_INGEST: Final = "usage.ingest"
OPERATIONS: Final = (OP_MESSAGE_SEND, OP_RUN_CANCEL, OP_USAGE_INGEST)
# the responders' queue groups: one member of each answers a request
GATEWAY_QUEUE: Final = "gateway-bus-api"
INGEST_QUEUE: Final = "ingest-bus-api"


def api_subject(tenant_id: str, user_id: str, operation: str) -> str:
    """``apex.api.<tenant>.<user>.<operation>``, from validated ids only."""
    if operation not in OPERATIONS:
        raise InvalidInput(f"unknown bus API operation {operation!r}")
    return f"{API_PREFIX}.{validate_id(tenant_id, 'ten')}.{validate_id(user_id, 'usr')}.{operation}"


def any_principal(operation: str) -> str:
    """The responders' subscription: ``operation`` for every tenant and user."""
    if operation not in OPERATIONS:
        raise InvalidInput(f"unknown bus API operation {operation!r}")
    return f"{API_PREFIX}.*.*.{operation}"


def parse_api_subject(subject: str) -> tuple[str, str, str]:
    """(tenant, user, operation) of a bus API subject; InvalidInput when it is not one.
    The NATS server bound the tenant and user to the caller's credentials."""
    parts = subject.split(".")
    operation = ".".join(parts[4:])
    if len(parts) < 6 or ".".join(parts[:2]) != API_PREFIX or operation not in OPERATIONS:
        raise InvalidInput(f"{subject!r} is not a bus API subject")
    return validate_id(parts[2], "ten"), validate_id(parts[3], "usr"), operation


def inbox_prefix(user_id: str) -> str:
    """The inbox prefix a service account's client must use: its replies (requests and
    its ordered consumers' deliveries) arrive under it, and nobody else's do."""
    return f"_INBOX.{validate_id(user_id, 'usr')}"


# --- HTTP: /api/v1/service-accounts ---------------------------------------------------


class ServiceAccountCreate(Model):
    name: UserText = Field(min_length=1, max_length=100)


class ServiceAccountOut(Model):
    """A service account as listed: never its seed or credentials."""

    id: str
    user_id: str
    name: str
    public_key: str
    created_at: datetime
    created_by: str
    status: Literal["active", "revoked"]
    revoked_at: datetime | None = None


class ServiceAccountCreated(Model):
    """The answer to a create: ``creds`` is the text of a standard NATS credentials file
    (user JWT and seed), shown this once; ``inbox_prefix`` is the one its client must use."""

    id: str
    user_id: str
    tenant_id: str
    name: str
    nats_url: str
    inbox_prefix: str
    creds: str


class ServiceAccountList(Model):
    service_accounts: list[ServiceAccountOut]


class RunCancelRequested(Model):
    """The bus API's answer to ``run.cancel`` (the HTTP cancel's body): the run ends with
    ``run.cancelled`` on its thread."""

    type: Literal["run.cancel.requested"] = "run.cancel.requested"
    ref: str | None = None
    run_id: str
    thread_id: str
    status: Literal["cancel_requested"] = "cancel_requested"
