"""``/api/v1/dashboard/*``: what the health dashboard polls, for the tenant's admins.

Service health, streams and delivery describe the platform (no tenant data in them);
SLA figures and error rates are the admin's own tenant's runs, as every read of the
event log is. Each answer is cheap: heartbeats are already in memory, JetStream answers
a handful of info requests, and persistence one query per poll."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from apex_contracts.queries import Q_SLA_SUMMARY, SlaSummary, SlaView
from apex_gateway.dashboard.figures import delivery_view, projector_lag, services_view
from apex_gateway.dashboard.streams import streams_view
from apex_gateway.deps import CurrentAdmin, Services

router = APIRouter(prefix="/api/v1/dashboard", tags=["dashboard"])


@router.get("/services")
async def services_health(_: CurrentAdmin, services: Services) -> dict[str, Any]:
    """Every service's state and every instance's latest heartbeat (breakers, details)."""
    return services_view(services.directory.instances())


@router.get("/streams")
async def streams_and_lag(_: CurrentAdmin, services: Services) -> dict[str, Any]:
    """Streams, durable consumers' pending work, and the projectors' lag."""
    view = await streams_view(services.bus)
    return {**view, "projectors": projector_lag(services.directory.instances())}


@router.get("/delivery")
async def delivery(_: CurrentAdmin, services: Services) -> dict[str, Any]:
    """Frames sent, acked, re-sent, replayed (all gateways) and delivery latency."""
    return delivery_view(services.directory.instances())


@router.get("/sla", response_model=SlaView)
async def service_levels(who: CurrentAdmin, services: Services) -> SlaView:
    """Time to first event, run duration and errors by code over 5 min, 1 h and 24 h."""
    return await services.bus.query(Q_SLA_SUMMARY, SlaSummary(tenant_id=who.tenant_id), SlaView)
