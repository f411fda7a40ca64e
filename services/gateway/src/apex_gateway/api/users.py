"""Erasure of a user's data (the right to be forgotten)."""

from __future__ import annotations

import logging

import redis.exceptions
from fastapi import APIRouter

from apex_contracts.events import UserErased, UserErasedData
from apex_contracts.streams import KV_IDEMPOTENCY, KV_RUNS
from apex_gateway.deps import CurrentUser, Services
from apex_gateway.messages import RunRecord
from apex_gateway.services import GatewayServices
from apex_gateway.tokens import Principal

router = APIRouter(prefix="/api/v1/users", tags=["users"])
log = logging.getLogger(__name__)


@router.delete("/me", status_code=202)
async def erase_me(who: CurrentUser, services: Services) -> dict[str, object]:
    """Appends the ``user.erased`` tombstone: every store and the archive erase the user's
    threads, runs, events and analytics rows; the erasure is audited (``data.erased``)
    when it is complete. The gateway's own records (cursors, idempotency, run owners) go now."""
    tombstone = UserErased(
        id=f"{who.user_id}:erased",
        tenant_id=who.tenant_id,
        user_id=who.user_id,
        data=UserErasedData(requested_by=who.user_id, reason="user request"),
    )
    await services.bus.publish(tombstone, UserErased.subject(who.tenant_id, who.user_id))
    forgotten = await _forget_gateway_records(services, who)
    return {"user_id": who.user_id, "erasure": "requested", "gateway_records_removed": forgotten}


async def _forget_gateway_records(services: GatewayServices, who: Principal) -> int:
    removed = 0
    try:
        async for key in services.cursors.redis_client.scan_iter(
            match=f"apex:{who.tenant_id}:cursor:{who.user_id}:*"
        ):
            removed += int(await services.cursors.redis_client.delete(key))
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        log.warning("cursors of an erased user remain until Redis is back: %r", exc)
    idempotency = await services.bus.kv(KV_IDEMPOTENCY)
    runs = await services.bus.kv(KV_RUNS)
    watcher = await idempotency.watch(f"{who.tenant_id}.{who.user_id}.>", ignore_deletes=True)
    records = []
    async for entry in watcher:
        if entry is None:
            break
        records.append(entry)
    await watcher.stop()
    for entry in records:
        run_id = RunRecord.model_validate_json(entry.value).run_id if entry.value else None
        await idempotency.purge(entry.key)
        removed += 1
        if run_id is not None:
            await runs.purge(run_id)
            removed += 1
    return removed
