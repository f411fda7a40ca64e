from __future__ import annotations

from fastapi import APIRouter

from apex_contracts import validate_id
from apex_gateway.deps import CurrentUser, Services

router = APIRouter(prefix="/api/v1", tags=["runs"])


@router.post("/runs/{run_id}/cancel", status_code=202)
async def cancel_run(run_id: str, who: CurrentUser, services: Services) -> dict[str, str]:
    validate_id(run_id, "run")
    record = await services.messages.cancel(who, run_id, via="POST /api/v1/runs/{run_id}/cancel")
    return {"run_id": run_id, "thread_id": record.thread_id, "status": "cancel_requested"}


@router.post("/ws-ticket")
async def ws_ticket(who: CurrentUser, services: Services) -> dict[str, object]:
    """A single-use ticket for ``/ws?ticket=…``, valid for 30 seconds."""
    ticket, ttl = await services.tickets.issue(who)
    return {"ticket": ticket, "expires_in": ttl}
