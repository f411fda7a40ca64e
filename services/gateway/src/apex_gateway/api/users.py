"""Erasure of a user (the right to be forgotten): the account closed, the history erased."""

from __future__ import annotations

import logging
from typing import Annotated

import redis.exceptions
from fastapi import APIRouter, Header

from apex_contracts import AuthFailed, ErrorCode
from apex_contracts.dedupe_ids import user_erased_id
from apex_contracts.events import UserErased, UserErasedData
from apex_contracts.streams import KV_IDEMPOTENCY, KV_RUNS, KV_USER_RUNS
from apex_gateway.deps import CurrentUser, Services
from apex_gateway.messages import RunRecord, runs_of
from apex_gateway.services import GatewayServices
from apex_gateway.tokens import Principal

router = APIRouter(prefix="/api/v1/users", tags=["users"])
log = logging.getLogger(__name__)


@router.delete("/me", status_code=202)
async def erase_me(
    who: CurrentUser, services: Services, authorization: Annotated[str | None, Header()] = None
) -> dict[str, object]:
    """Erases the caller: their history, then their account, then what slipped between.

    1. The ``user.erased`` tombstone is appended, naming the user's runs (any still going
       publishes after it; those facts are covered too): every store and the log erase
       what it covers, and the erasure is audited (``data.erased``) when complete.
    2. Auth closes the account: every session revoked (open sockets close with 4401
       ``session_revoked``), the user and every personal record auth holds deleted.
       Nothing new can happen under this user from here on.
    3. A second tombstone extends the erasure over whatever the user did between 1 and 2
       (another tab), naming the runs again.
    4. The gateway's own records (cursors, idempotency, run owners) go.

    Every step is idempotent, and a failure before 2 leaves the account open: the user
    tries again. Only a failure of 3 (the bus down for 15 s right after 2) can leave facts
    of those moments, for an operator to erase."""
    token = (authorization or "")[7:].strip()
    if not token:  # an identity not from a Bearer token (never the case today)
        raise AuthFailed(code=ErrorCode.TOKEN_MISSING)
    await _tombstone(services, who, await runs_of(services.bus, who), account_closed=False)
    await services.accounts.close(token)
    records = await runs_of(services.bus, who)
    await _tombstone(services, who, records, account_closed=True)
    forgotten = await _forget_gateway_records(services, who, records)
    return {
        "user_id": who.user_id,
        "account": "closed",
        "erasure": "requested",
        "gateway_records_removed": forgotten,
    }


async def _tombstone(
    services: GatewayServices,
    who: Principal,
    records: list[tuple[str, RunRecord]],
    *,
    account_closed: bool,
) -> None:
    tombstone = UserErased(
        id=user_erased_id(who.user_id, account_closed=account_closed),
        tenant_id=who.tenant_id,
        user_id=who.user_id,
        data=UserErasedData(
            requested_by=who.user_id,
            reason="user request",
            runs=sorted({record.run_id for _key, record in records}),
            account_closed=account_closed,
        ),
    )
    await services.bus.publish(tombstone, UserErased.subject(who.tenant_id, who.user_id))


async def _forget_gateway_records(
    services: GatewayServices, who: Principal, records: list[tuple[str, RunRecord]]
) -> int:
    """Cursors in Redis; the user's idempotency records and run-slot record, and the run
    owners of their runs, purged from the buckets' streams by subject (a key purge would
    leave a marker whose subject names the user)."""
    removed = 0
    try:
        async for key in services.cursors.redis_client.scan_iter(
            match=f"apex:{who.tenant_id}:cursor:{who.user_id}:*"
        ):
            removed += int(await services.cursors.redis_client.delete(key))
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        log.warning("cursors of an erased user remain until Redis is back: %r", exc)
    mine = f"{who.tenant_id}.{who.user_id}"
    for bucket, subject in (
        (KV_IDEMPOTENCY, f"{mine}.>"),
        (KV_USER_RUNS, mine),
        *((KV_RUNS, record.run_id) for _key, record in records),
    ):
        await services.bus.js.purge_stream(f"KV_{bucket}", subject=f"$KV.{bucket}.{subject}")
        removed += 1
    return removed
