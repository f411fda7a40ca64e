"""Tenant administration: the audit log, readable by the tenant's admins only."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from apex_contracts.frames import UserText
from apex_contracts.queries import AuditList, AuditPage
from apex_gateway.deps import CurrentAdmin, Services

router = APIRouter(prefix="/api/v1", tags=["admin"])


@router.get("/audit", response_model=AuditPage)
async def audit_log(
    who: CurrentAdmin,
    services: Services,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: datetime | None = None,
    action: Annotated[list[UserText] | None, Query()] = None,
) -> AuditPage:
    """The tenant's security facts, newest first; page with ``before``."""
    query = AuditList(tenant_id=who.tenant_id, limit=limit, before=before, actions=action or [])
    return await services.reads.audit(query)
