"""Provider connectors of the caller's tenant.

- ``GET /api/v1/usage/connectors``: each connector with its last-sync state.
- ``PUT /api/v1/usage/connectors/{provider}`` (admin): connects ``openai`` or
  ``anthropic`` with an admin key (tried on the provider first, then stored sealed).
- ``POST /api/v1/usage/connectors/{provider}/sync`` (admin): syncs now.
- ``DELETE /api/v1/usage/connectors/{provider}`` (admin).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from apex_ingest.connectors.model import ConnectIn, ConnectorView, Provider
from apex_ingest.deps import CurrentAdmin, CurrentUser, Services

router = APIRouter(prefix="/api/v1/usage/connectors", tags=["connectors"])


@router.get("")
async def list_connectors(who: CurrentUser, services: Services) -> dict[str, Any]:
    views = await services.connectors.list(who.tenant_id)
    return {"connectors": [v.model_dump(mode="json") for v in views]}


@router.get("/{provider}")
async def get_connector(provider: Provider, who: CurrentUser, services: Services) -> ConnectorView:
    return await services.connectors.view(who.tenant_id, provider)


@router.put("/{provider}")
async def connect(
    provider: Provider, body: ConnectIn, who: CurrentAdmin, services: Services
) -> ConnectorView:
    return await services.connectors.connect(who, provider, body)


@router.post("/{provider}/sync")
async def sync_now(provider: Provider, who: CurrentAdmin, services: Services) -> ConnectorView:
    return await services.connectors.sync_now(who.tenant_id, provider)


@router.delete("/{provider}", status_code=204, response_class=Response)
async def disconnect(provider: Provider, who: CurrentAdmin, services: Services) -> Response:
    await services.connectors.disconnect(who.tenant_id, provider)
    return Response(status_code=204)
