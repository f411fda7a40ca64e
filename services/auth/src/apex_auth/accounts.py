"""Accounts: register (a new tenant, or joining one with an invite), login, invites,
password change, and who-am-I.

Login answers an unknown email and a wrong password identically, in the same time:
the same lookup, the same throttle round trip, an Argon2 verification either way (a
dummy hash for the unknown email), and the audit write of a known account's failure
happens after the answer, off the request path.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from apex_auth import metrics
from apex_auth.audit import AuditRecord, record
from apex_auth.db import STORE_FAILURES, Database
from apex_auth.model import (
    ROLES,
    Client,
    InviteIssued,
    Issued,
    Principal,
    lookup_email,
    normalise_email,
)
from apex_auth.passwords import PasswordHashing, check_policy
from apex_auth.revocation import Actor, Revocations
from apex_auth.sessions import Opened, Sessions
from apex_auth.tables import invites, sessions, tenants, users
from apex_auth.throttle import Limit, Throttle, account_key
from apex_auth.tokens import INVITE_PREFIX, digest, new_secret
from apex_contracts import (
    AuthFailed,
    Conflict,
    ErrorCode,
    Forbidden,
    InvalidInput,
    RateLimited,
    new_id,
    utcnow,
)
from apex_contracts.auth import OPERATOR_ROLE, TokenPair
from apex_runtime import log_context

log = logging.getLogger(__name__)

_BAD_INVITE = "The invite is not valid, has expired, or was already used."


class Accounts:
    def __init__(
        self,
        db: Database,
        passwords: PasswordHashing,
        sessions_: Sessions,
        revocations: Revocations,
        throttle: Throttle,
        limits: dict[str, Limit],
        *,
        invite_ttl_s: int,
    ) -> None:
        self._db = db
        self._passwords = passwords
        self._sessions = sessions_
        self._revocations = revocations
        self._throttle = throttle
        self._limits = limits
        self._invite_ttl = timedelta(seconds=invite_ttl_s)
        self._background: set[asyncio.Task[None]] = set()

    async def register(
        self, email: str, password: str, *, tenant: str | None, invite: str | None, client: Client
    ) -> Issued:
        """A new account: the admin of a new tenant named ``tenant``, or a member of the
        tenant that issued ``invite`` with the invite's role. Raises Conflict
        (``already_exists``) for an email that has an account, after the same hashing
        work as a success."""
        await self._throttle.hit(self._throttle.counter(self._limits["register"], _address(client)))
        address = normalise_email(email)
        check_policy(password, email=address)
        password_hash = await self._passwords.hash(password)
        try:
            async with self._db.transaction() as conn:
                user, opened = await self._create_account(
                    conn, address, password_hash, tenant=tenant, invite=invite, client=client
                )
        except Conflict:
            # The owner's tenant learns that someone tried to sign up with their email.
            self._after_answer(
                await self._find_user(address), "auth.register", client, {"reason": "email_taken"}
            )
            raise
        metrics.REGISTRATIONS.labels("success").inc()
        return Issued(await self._sessions.issue(opened), user.id, user.tenant_id)

    async def login(self, email: str, password: str, client: Client) -> TokenPair:
        """A new session for the account, or AuthFailed(``invalid_credentials``) that
        does not say which of email and password was wrong."""
        address = lookup_email(email)
        user = await self._find_user(address)
        account = self._throttle.counter(self._limits["login_account"], account_key(address))
        per_address = self._throttle.counter(self._limits["login_address"], _address(client))
        try:
            await self._throttle.hit(account, per_address)
        except RateLimited as exc:
            metrics.LOGINS.labels("throttled").inc()
            self._after_answer(user, "auth.login_throttled", client, {"retry_after_ms": exc.retry_after_ms})
            raise
        if not await self._passwords.verify(user.password_hash if user else None, password):
            metrics.LOGINS.labels("failure" if user else "unknown_account").inc()
            self._after_answer(user, "auth.login_failed", client, {})
            raise AuthFailed(code=ErrorCode.INVALID_CREDENTIALS)
        await self._throttle.reset(account)
        await self._throttle.forgive(per_address)
        async with self._db.transaction() as conn:
            await self._upgrade_hash(conn, user, password)
            opened = await self._sessions.open(conn, user, client)
            await record(
                conn,
                AuditRecord(
                    action="auth.login",
                    outcome="success",
                    tenant_id=user.tenant_id,
                    actor_user_id=user.id,
                    session_id=opened.subject.session_id,
                    source_ip=client.ip,
                ),
            )
        metrics.LOGINS.labels("success").inc()
        return await self._sessions.issue(opened)

    async def invite(self, principal: Principal, email: str, role: str, client: Client) -> InviteIssued:
        """An invite for ``email`` to join the caller's tenant; admins only. Answers the
        same whether or not the email already has an account."""
        if role not in ROLES:
            raise InvalidInput(f"role must be one of {', '.join(ROLES)}")
        address = normalise_email(email)
        token, token_hash = new_secret(INVITE_PREFIX)
        invite_id, now = new_id("inv"), utcnow()
        async with self._db.transaction() as conn:
            await self._require_admin(conn, principal)
            await conn.execute(
                insert(invites).values(
                    id=invite_id,
                    tenant_id=principal.tenant_id,
                    email=address,
                    role=role,
                    token_hash=token_hash,
                    created_by=principal.user_id,
                    created_at=now,
                    expires_at=now + self._invite_ttl,
                )
            )
            await record(
                conn,
                AuditRecord(
                    action="auth.invite_created",
                    outcome="success",
                    tenant_id=principal.tenant_id,
                    actor_user_id=principal.user_id,
                    session_id=principal.session_id,
                    source_ip=client.ip,
                    target=invite_id,
                    details={"role": role, "email": address},
                ),
            )
        return InviteIssued(invite_id, token, now + self._invite_ttl)

    async def change_password(self, principal: Principal, current: str, new: str, client: Client) -> None:
        """Replaces the caller's password and revokes their other sessions."""
        counter = self._throttle.counter(self._limits["login_account"], principal.user_id)
        await self._throttle.hit(counter)
        user = await self._user(principal)
        if not await self._passwords.verify(user.password_hash, current):
            raise AuthFailed("The current password is wrong.", code=ErrorCode.INVALID_CREDENTIALS)
        await self._throttle.reset(counter)
        check_policy(new, email=user.email)
        if new == current:
            raise InvalidInput("The new password must differ from the current one.")
        new_hash = await self._passwords.hash(new)
        async with self._db.transaction() as conn:
            await conn.execute(
                update(users)
                .where(users.c.id == user.id)
                .values(password_hash=new_hash, password_changed_at=utcnow())
            )
            others = await _other_sessions(conn, principal)
            notices = await self._revocations.revoke(
                conn,
                others,
                reason="password_changed",
                actor=Actor(principal.user_id, principal.session_id, client.ip),
            )
            await record(
                conn,
                AuditRecord(
                    action="auth.password_changed",
                    outcome="success",
                    tenant_id=principal.tenant_id,
                    actor_user_id=principal.user_id,
                    session_id=principal.session_id,
                    source_ip=client.ip,
                    details={"sessions_revoked": len(notices)},
                ),
            )
        await self._revocations.announce(notices)

    async def me(self, principal: Principal) -> dict[str, Any]:
        user = await self._user(principal)
        return {
            "user_id": user.id,
            "tenant_id": user.tenant_id,
            "email": user.email,
            # the stored roles, and operator when the token carries it (configuration, not storage)
            "roles": [*user.roles, *(r for r in principal.roles if r == OPERATOR_ROLE)],
        }

    async def _create_account(
        self,
        conn: AsyncConnection,
        address: str,
        password_hash: str,
        *,
        tenant: str | None,
        invite: str | None,
        client: Client,
    ) -> tuple[Any, Opened]:
        if invite is not None:
            tenant_id, role, invite_id = await self._accept_invite(conn, invite, address)
        else:
            tenant_id, role, invite_id = await _new_tenant(conn, tenant or ""), "admin", None
        user = await _insert_user(conn, tenant_id, address, password_hash, role)
        if invite_id is not None:
            await conn.execute(update(invites).where(invites.c.id == invite_id).values(accepted_by=user.id))
        opened = await self._sessions.open(conn, user, client)
        await _record_registration(conn, user, opened.subject.session_id, invite_id, client)
        return user, opened

    async def drain(self) -> None:
        """Waits for the audit writes still running after their answer was sent."""
        if self._background:
            await asyncio.gather(*self._background)

    async def _find_user(self, address: str) -> Any:
        async with self._db.engine.connect() as conn:
            return (await conn.execute(select(users).where(users.c.email == address))).first()

    async def _user(self, principal: Principal) -> Any:
        async with self._db.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(users).where(
                        users.c.id == principal.user_id, users.c.tenant_id == principal.tenant_id
                    )
                )
            ).first()
        if row is None:
            raise AuthFailed(code=ErrorCode.SESSION_REVOKED)
        return row

    async def _require_admin(self, conn: AsyncConnection, principal: Principal) -> None:
        roles = await conn.scalar(
            select(users.c.roles).where(
                users.c.id == principal.user_id, users.c.tenant_id == principal.tenant_id
            )
        )
        if not roles or "admin" not in roles:
            raise Forbidden("Only an admin of the tenant can do that.")

    async def _accept_invite(self, conn: AsyncConnection, token: str, address: str) -> tuple[str, str, str]:
        row = (
            await conn.execute(select(invites).where(invites.c.token_hash == digest(token)).with_for_update())
        ).first()
        if row is None or row.accepted_at is not None or row.expires_at <= utcnow() or row.email != address:
            raise InvalidInput(_BAD_INVITE)
        await conn.execute(update(invites).where(invites.c.id == row.id).values(accepted_at=utcnow()))
        return row.tenant_id, row.role, row.id

    async def _upgrade_hash(self, conn: AsyncConnection, user: Any, password: str) -> None:
        if self._passwords.needs_rehash(user.password_hash):
            new_hash = await self._passwords.hash(password)
            await conn.execute(update(users).where(users.c.id == user.id).values(password_hash=new_hash))

    def _after_answer(self, user: Any, action: str, client: Client, details: dict[str, Any]) -> None:
        task = asyncio.create_task(self._record_failure(user, action, client, details))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _record_failure(self, user: Any, action: Any, client: Client, details: dict[str, Any]) -> None:
        if user is None:
            with log_context(audit_action=action, source_ip=client.ip, account="unknown"):
                log.info("%s: no account has this email %s", action, details or "")
            return
        try:
            async with self._db.transaction() as conn:
                await record(
                    conn,
                    AuditRecord(
                        action=action,
                        outcome="failure",
                        tenant_id=user.tenant_id,
                        actor_user_id=user.id,
                        source_ip=client.ip,
                        details=details,
                    ),
                )
        except STORE_FAILURES as exc:
            log.error("audit of %s for %s not recorded: %r", action, user.id, exc)


async def _new_tenant(conn: AsyncConnection, name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= 100:
        raise InvalidInput("The tenant name must have 1 to 100 characters.")
    tenant_id = str(new_id("ten"))
    await conn.execute(insert(tenants).values(id=tenant_id, name=name, created_at=utcnow()))
    return tenant_id


async def _insert_user(
    conn: AsyncConnection, tenant_id: str, address: str, password_hash: str, role: str
) -> Any:
    now = utcnow()
    values = {
        "id": new_id("usr"),
        "tenant_id": tenant_id,
        "email": address,
        "password_hash": password_hash,
        "roles": [role],
        "created_at": now,
        "password_changed_at": now,
    }
    try:
        await conn.execute(insert(users).values(**values))
    except IntegrityError as exc:
        metrics.REGISTRATIONS.labels("already_exists").inc()
        raise Conflict("An account with this email already exists.", code=ErrorCode.ALREADY_EXISTS) from exc
    return (await conn.execute(select(users).where(users.c.id == values["id"]))).one()


async def _record_registration(
    conn: AsyncConnection, user: Any, session_id: str, invite_id: str | None, client: Client
) -> None:
    common = {
        "tenant_id": user.tenant_id,
        "actor_user_id": user.id,
        "session_id": session_id,
        "source_ip": client.ip,
    }
    await record(
        conn,
        AuditRecord(
            action="auth.register",
            outcome="success",
            target=user.id,
            details={"roles": list(user.roles)},
            **common,
        ),
    )
    if invite_id is not None:
        await record(
            conn, AuditRecord(action="auth.invite_accepted", outcome="success", target=invite_id, **common)
        )


async def _other_sessions(conn: AsyncConnection, principal: Principal) -> list[str]:
    rows = await conn.execute(
        select(sessions.c.id).where(
            sessions.c.tenant_id == principal.tenant_id,
            sessions.c.user_id == principal.user_id,
            sessions.c.id != principal.session_id,
            sessions.c.revoked_at.is_(None),
        )
    )
    return [row.id for row in rows]


def _address(client: Client) -> str:
    return client.ip or "unknown"
