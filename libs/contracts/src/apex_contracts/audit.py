"""Security-relevant facts, published on ``apex.audit.<tenant>`` (stream ``APEX_AUDIT``)
by whoever observes them, projected by persistence into the append-only ``audit_log``
and readable by the tenant's admins."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from apex_contracts.envelope import Model, utcnow
from apex_contracts.ids import TenantId, validate_id

AuditAction = Literal[
    "auth.register",
    "auth.login",
    "auth.login_failed",
    "auth.login_throttled",
    "auth.refresh",
    "auth.refresh_reused",
    "auth.logout",
    "auth.session_revoked",
    "auth.password_changed",
    "auth.invite_created",
    "auth.invite_accepted",
    "auth.key_rotated",
    "auth.service_account_created",
    "auth.service_account_revoked",
    "access.cross_tenant",
    "access.denied",
    "data.erased",
    "admin.action",
]


class AuditEntry(Model):
    id: str = Field(min_length=8, max_length=100)
    tenant_id: TenantId
    action: AuditAction
    outcome: Literal["success", "failure", "denied"]
    at: datetime = Field(default_factory=utcnow)
    actor_user_id: str | None = None
    session_id: str | None = None
    source_ip: str | None = None
    service: str
    target: str | None = None
    details: dict[str, Any] = {}


def audit_subject(tenant_id: str) -> str:
    return f"apex.audit.{validate_id(tenant_id, 'ten')}"
