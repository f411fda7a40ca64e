"""Erasure of a user (the right to be forgotten): the account closed, the history erased,
the gateway's own records of the user removed. ``DELETE /api/v1/users/me`` calls it."""

from __future__ import annotations

import logging

import redis.exceptions

from apex_contracts.dedupe_ids import user_erased_id
from apex_contracts.events import UserErased, UserErasedData
from apex_contracts.streams import KV_IDEMPOTENCY, KV_RUNS, KV_USER_RUNS
from apex_gateway.accounts import AuthAccounts
from apex_gateway.cursors import DeliveryCursors
from apex_gateway.messages import RunRecord, runs_of
from apex_gateway.tokens import Principal
from apex_runtime import Bus

log = logging.getLogger(__name__)


class UserErasure:
    def __init__(self, bus: Bus, cursors: DeliveryCursors, accounts: AuthAccounts) -> None:
        self._bus = bus
        self._cursors = cursors
        self._accounts = accounts

    async def erase(self, who: Principal, token: str) -> int:
        """Erases ``who`` (``token`` is theirs, for auth); returns how many gateway records
        went. Every step is idempotent, and a failure before the account closes leaves it
        open: the user tries again (the route's docstring tells the steps)."""
        await self._tombstone(who, await runs_of(self._bus, who), account_closed=False)
        await self._accounts.close(token)
        records = await runs_of(self._bus, who)
        await self._tombstone(who, records, account_closed=True)
        return await self._forget_gateway_records(who, records)

    async def _tombstone(
        self, who: Principal, records: list[tuple[str, RunRecord]], *, account_closed: bool
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
        await self._bus.publish(tombstone, UserErased.subject(who.tenant_id, who.user_id))

    async def _forget_gateway_records(self, who: Principal, records: list[tuple[str, RunRecord]]) -> int:
        """Cursors in Redis; the user's idempotency records and run-slot record, and the run
        owners of their runs, purged from the buckets' streams by subject (a key purge would
        leave a marker whose subject names the user)."""
        removed = 0
        redis_client = self._cursors.redis_client
        try:
            async for key in redis_client.scan_iter(match=f"apex:{who.tenant_id}:cursor:{who.user_id}:*"):
                removed += int(await redis_client.delete(key))
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            log.warning("cursors of an erased user remain until Redis is back: %r", exc)
        mine = f"{who.tenant_id}.{who.user_id}"
        for bucket, subject in (
            (KV_IDEMPOTENCY, f"{mine}.>"),
            (KV_USER_RUNS, mine),
            *((KV_RUNS, record.run_id) for _key, record in records),
        ):
            await self._bus.purge(f"KV_{bucket}", f"$KV.{bucket}.{subject}")
            removed += 1
        return removed
