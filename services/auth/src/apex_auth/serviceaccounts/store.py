"""Create, list and revoke a tenant's service accounts (tenant admins only).

A service account is a principal of its tenant with its own ``user_id``; its credential is
a NATS user of the ``APEX`` account whose JWT carries exactly the bus API permissions of
(tenant, user) (``apex_runtime.buspermissions.service_account_permissions``). The seed is
generated here, returned once in the ``.creds`` text and never stored: only the public key
is kept, which is what a revocation names.

Revoking records the revocation (and its audit fact) first, then pushes the account JWT
with every revoked key of the platform to the servers, which close the user's connections.
Pushes are serialised by a Postgres advisory lock and each carries the whole list, so
replicas revoking at once never undo one another. A push that fails leaves the revocation
recorded: the answer is 503 (retry the DELETE, which pushes again), and every auth start
pushes the list too (``publish_revocations``)."""

from __future__ import annotations

import asyncio
import logging
import ssl
from pathlib import Path

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from apex_auth.audit import AuditRecord, record
from apex_auth.db import Database, advisory_xact_lock
from apex_auth.model import Client, Principal
from apex_auth.tables import service_accounts, users
from apex_contracts import ErrorCode, Forbidden, NotFound, Unavailable, new_id, utcnow
from apex_contracts.busapi import ServiceAccountCreated, ServiceAccountOut, inbox_prefix
from apex_runtime.buspermissions import service_account_permissions
from apex_runtime.natsissuer import AccountIssuer, push_account

log = logging.getLogger(__name__)
_PUSH_LOCK = "nats-account-jwt"
_NOT_CONFIGURED = (
    "Service accounts are not available: the bus issuer is not configured "
    "(APEX_NATS_ISSUER_FILE, APEX_NATS_SYSTEM_CREDS)."
)


class ServiceAccounts:
    """``issuer`` and ``system_creds`` None: service accounts are off or not configured
    (create answers 503 ``service_unavailable``; list still works)."""

    def __init__(
        self,
        db: Database,
        issuer: AccountIssuer | None,
        *,
        nats_url: str,
        public_url: str,
        system_creds: Path | None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._db = db
        self._tls = tls
        self._issuer = issuer
        self._nats_url = nats_url
        self._public_url = public_url
        self._system_creds = system_creds

    async def create(self, principal: Principal, name: str, client: Client) -> ServiceAccountCreated:
        issuer = self._require_issuer()
        account_id, user_id, now = new_id("sva"), new_id("usr"), utcnow()
        issued = issuer.issue(
            f"{principal.tenant_id}/{user_id}", service_account_permissions(principal.tenant_id, user_id)
        )
        async with self._db.transaction() as conn:
            await _require_admin(conn, principal)
            await conn.execute(
                insert(service_accounts).values(
                    id=account_id,
                    tenant_id=principal.tenant_id,
                    user_id=user_id,
                    name=name,
                    public_key=issued.public_key,
                    created_by=principal.user_id,
                    created_at=now,
                )
            )
            await record(conn, _audit("auth.service_account_created", principal, client, account_id, user_id))
        return ServiceAccountCreated(
            id=account_id,
            user_id=user_id,
            tenant_id=principal.tenant_id,
            name=name,
            nats_url=self._public_url,
            inbox_prefix=inbox_prefix(user_id),
            creds=issued.creds,
        )

    async def list(self, principal: Principal) -> list[ServiceAccountOut]:
        async with self._db.transaction() as conn:
            await _require_admin(conn, principal)
            rows = (
                await conn.execute(
                    select(service_accounts)
                    .where(service_accounts.c.tenant_id == principal.tenant_id)
                    .order_by(service_accounts.c.created_at)
                )
            ).all()
        return [
            ServiceAccountOut(
                id=row.id,
                user_id=row.user_id,
                name=row.name,
                public_key=row.public_key,
                created_at=row.created_at,
                created_by=row.created_by,
                status="revoked" if row.revoked_at else "active",
                revoked_at=row.revoked_at,
            )
            for row in rows
        ]

    async def revoke(self, principal: Principal, account_id: str, client: Client) -> None:
        """Idempotent: revoking a revoked account pushes the list again."""
        self._require_issuer()
        async with self._db.transaction() as conn:
            await _require_admin(conn, principal)
            row = (
                await conn.execute(
                    select(service_accounts)
                    .where(
                        service_accounts.c.id == account_id,
                        service_accounts.c.tenant_id == principal.tenant_id,
                    )
                    .with_for_update()
                )
            ).first()
            if row is None:
                raise NotFound("No such service account.")
            if row.revoked_at is None:
                await conn.execute(
                    update(service_accounts)
                    .where(service_accounts.c.id == account_id)
                    .values(revoked_at=utcnow(), revoked_by=principal.user_id)
                )
                await record(
                    conn, _audit("auth.service_account_revoked", principal, client, account_id, row.user_id)
                )
        await self.publish_revocations()

    async def publish_revocations(self) -> int:
        """Pushes the account JWT with every revoked key to the servers; returns how many
        (Unavailable when the bus does not take it)."""
        issuer, system_creds = self._require_issuer(), self._system_creds
        if system_creds is None:  # _require_issuer checked it; typed here
            raise Unavailable(_NOT_CONFIGURED, code=ErrorCode.SERVICE_UNAVAILABLE)
        async with self._db.transaction() as conn:
            await advisory_xact_lock(conn, _PUSH_LOCK)
            rows = (
                await conn.execute(
                    select(service_accounts.c.public_key, service_accounts.c.revoked_at).where(
                        service_accounts.c.revoked_at.is_not(None)
                    )
                )
            ).all()
            # NATS refuses every JWT of the key issued at or before this second
            revoked = {row.public_key: int(row.revoked_at.timestamp()) for row in rows}
            await push_account(self._nats_url, system_creds, issuer.account_jwt(revoked), tls=self._tls)
        return len(revoked)

    async def keep_published(self, stop: asyncio.Event, retry_s: float = 5.0) -> None:
        """At start: the servers get the revocations again (``apex up`` signs the account
        anew at each start, and the servers take the newer JWT, which has none); retried
        until it works or the service stops."""
        if self._issuer is None:
            return
        while not stop.is_set():
            try:
                count = await self.publish_revocations()
                log.info("service accounts: revocations published at start (%d keys)", count)
                return
            except Unavailable as exc:
                log.warning("service accounts: revocations not published yet (%s); retrying", exc.message)
            try:
                await asyncio.wait_for(stop.wait(), retry_s)
            except TimeoutError:
                continue

    def _require_issuer(self) -> AccountIssuer:
        if self._issuer is None or self._system_creds is None:
            raise Unavailable(_NOT_CONFIGURED, code=ErrorCode.SERVICE_UNAVAILABLE)
        return self._issuer


async def _require_admin(conn: AsyncConnection, principal: Principal) -> None:
    """The stored roles decide (a token minted before a demotion does not)."""
    roles = await conn.scalar(
        select(users.c.roles).where(users.c.id == principal.user_id, users.c.tenant_id == principal.tenant_id)
    )
    if not roles or "admin" not in roles:
        raise Forbidden("Only an admin of the tenant can manage service accounts.")


def _audit(action: str, principal: Principal, client: Client, account_id: str, user_id: str) -> AuditRecord:
    return AuditRecord(
        action=action,  # type: ignore[arg-type]  # one of the two service-account actions
        outcome="success",
        tenant_id=principal.tenant_id,
        actor_user_id=principal.user_id,
        session_id=principal.session_id,
        source_ip=client.ip,
        target=f"service_account:{account_id}",
        details={"user_id": user_id},
    )


ERASED_ADMIN = "erased"


async def forget_admin(conn: AsyncConnection, user_id: str) -> None:
    """An admin's account is closed (erasure): the service accounts they created or
    revoked stay the tenant's, no longer naming them."""
    for column in (service_accounts.c.created_by, service_accounts.c.revoked_by):
        await conn.execute(
            update(service_accounts).where(column == user_id).values({column.name: ERASED_ADMIN})
        )
