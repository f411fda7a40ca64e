"""``/api/v1/dashboard/*``: what the health dashboards poll.

Two audiences, two scopes:
- the platform's operators (role ``operator``, granted by configuration only): service
  health, streams and consumers, delivery of every gateway: platform-wide figures;
- a tenant's admins: their own tenant's runs and service levels (with errors by code),
  beside the audit log (``/api/v1/audit``); never a stream, consumer or instance name,
  never a platform-wide counter.

Each answer is cheap: heartbeats are already in memory, JetStream answers a handful of
info requests, and persistence one query per poll."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from apex_contracts.queries import RunsPage, SlaView
from apex_gateway.dashboard.figures import delivery_view, projector_lag, services_view
from apex_gateway.deps import CurrentAdmin, CurrentOperator, Services

router = APIRouter(prefix="/api/v1/dashboard", tags=["dashboard"])


@router.get("/services")
async def services_health(_: CurrentOperator, services: Services) -> dict[str, Any]:
    """Every service's state and every instance's latest heartbeat (operators only)."""
    return services_view(services.directory.instances())


@router.get("/streams")
async def streams_and_lag(_: CurrentOperator, services: Services) -> dict[str, Any]:
    """Streams, durable consumers' pending work, and the projectors' lag (operators only)."""
    view = await services.reads.streams()
    return {**view, "projectors": projector_lag(services.directory.instances())}


@router.get("/delivery")
async def delivery(_: CurrentOperator, services: Services) -> dict[str, Any]:
    """Frames sent, acked, re-sent, replayed (all gateways) and delivery latency (operators only)."""
    return delivery_view(services.directory.instances())


@router.get("/sla", response_model=SlaView)
async def service_levels(who: CurrentAdmin, services: Services) -> SlaView:
    """The caller's tenant: time to first event, run duration and errors by code over
    5 min, 1 h and 24 h."""
    return await services.reads.service_levels(who.tenant_id)


@router.get("/runs", response_model=RunsPage)
async def recent_runs(
    who: CurrentAdmin, services: Services, limit: Annotated[int, Query(ge=1, le=200)] = 25
) -> RunsPage:
    """The caller's tenant's latest runs, newest first."""
    return await services.reads.recent_runs(who.tenant_id, limit)
