"""The HTTP API of the auth service (``/auth/*`` and the JWKS)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Response, status

from apex_auth.deps import AccountsPort, Caller, ClosurePort, CurrentUser, KeysPort, SessionsPort
from apex_auth.schemas import (
    ErrorBody,
    InviteOut,
    InviteRequest,
    LoginRequest,
    Me,
    PasswordChangeRequest,
    RefreshRequest,
    Registered,
    RegisterRequest,
    SessionList,
    SessionOut,
)
from apex_contracts.auth import JWKS_PATH, TokenPair

JWKS_MAX_AGE_S = 60

_errors: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (401, 403, 404, 409, 422, 429, 503)
}
router = APIRouter(prefix="/auth", tags=["auth"], responses=_errors)
jwks_router = APIRouter(tags=["keys"])


@router.post("/register", status_code=status.HTTP_201_CREATED)
async def register(body: RegisterRequest, accounts: AccountsPort, client: Caller) -> Registered:
    """A new tenant with the caller as its admin, or, with ``invite``, a seat in the
    inviting tenant with the invite's role. Answers 409 ``already_exists`` for an email
    that has an account (see docs/auth.md for why)."""
    issued = await accounts.register(
        body.email, body.password, tenant=body.tenant, invite=body.invite, client=client
    )
    return Registered(**issued.tokens.model_dump(), user_id=issued.user_id, tenant_id=issued.tenant_id)


@router.post("/login")
async def login(body: LoginRequest, accounts: AccountsPort, client: Caller) -> TokenPair:
    """A new session. Wrong password and unknown email answer the same 401."""
    return await accounts.login(body.email, body.password, client)


@router.post("/refresh")
async def refresh(body: RefreshRequest, sessions: SessionsPort, client: Caller) -> TokenPair:
    """Rotates the refresh token. Presenting a used one revokes its session."""
    return await sessions.refresh(body.refresh_token, client)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(user: CurrentUser, sessions: SessionsPort, client: Caller) -> Response:
    await sessions.logout(user, client)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/sessions")
async def list_sessions(user: CurrentUser, sessions: SessionsPort) -> SessionList:
    views = await sessions.list_own(user)
    return SessionList(sessions=[SessionOut(**asdict(view)) for view in views])


@router.delete("/sessions/{session_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_session(
    session_id: str, user: CurrentUser, sessions: SessionsPort, client: Caller
) -> Response:
    await sessions.revoke_own(user, session_id, client)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/password", status_code=status.HTTP_204_NO_CONTENT)
async def change_password(
    body: PasswordChangeRequest, user: CurrentUser, accounts: AccountsPort, client: Caller
) -> Response:
    """Replaces the password; every other session of the user is revoked."""
    await accounts.change_password(user, body.current_password, body.new_password, client)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/invites", status_code=status.HTTP_201_CREATED)
async def create_invite(
    body: InviteRequest, user: CurrentUser, accounts: AccountsPort, client: Caller
) -> InviteOut:
    """An invite to the caller's tenant (admins only)."""
    issued = await accounts.invite(user, body.email, body.role, client)
    return InviteOut(
        invite_id=issued.invite_id, invite_token=issued.invite_token, expires_at=issued.expires_at
    )


@router.get("/me")
async def me(user: CurrentUser, accounts: AccountsPort) -> Me:
    return Me(**await accounts.me(user))


@router.delete("/me", status_code=status.HTTP_204_NO_CONTENT)
async def close_account(user: CurrentUser, closure: ClosurePort, client: Caller) -> Response:
    """Closes the caller's account: every session revoked (open sockets close with 4401
    ``session_revoked``), the user and every personal record auth holds deleted. Part of
    erasing a user: ``DELETE /api/v1/users/me`` on the gateway calls it, then erases the
    user's history."""
    await closure.close(user, client)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@jwks_router.get(JWKS_PATH)
async def jwks(keys: KeysPort, response: Response) -> dict[str, list[dict[str, object]]]:
    """Every public key a live token may be signed with."""
    response.headers["Cache-Control"] = f"public, max-age={JWKS_MAX_AGE_S}"
    return await keys.jwks()
