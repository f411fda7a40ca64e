"""FastAPI dependencies, as ``Annotated`` aliases so routes read like prose."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from apex_auth.accounts import Accounts
from apex_auth.keys import KeyRing
from apex_auth.model import Client, Principal
from apex_auth.service import AuthService
from apex_auth.sessions import Sessions
from apex_contracts import AuthFailed, ErrorCode

_bearer = HTTPBearer(auto_error=False, description="An access token from /auth/login")


def _service(request: Request) -> AuthService:
    service: AuthService = request.app.state.service
    return service


Service = Annotated[AuthService, Depends(_service)]


def _accounts(service: Service) -> Accounts:
    return service.accounts


def _sessions(service: Service) -> Sessions:
    return service.sessions


def _keys(service: Service) -> KeyRing:
    return service.keys


def _client(request: Request, service: Service) -> Client:
    """The caller's address: the socket peer, or, behind ``auth_forwarded_hops`` trusted
    proxies, the address the outermost of them saw (never a client-chosen header)."""
    peer = request.client.host if request.client else None
    hops = service.settings.auth_forwarded_hops
    forwarded = [
        part.strip() for part in request.headers.get("x-forwarded-for", "").split(",") if part.strip()
    ]
    ip = forwarded[-hops] if hops and len(forwarded) >= hops else peer
    return Client(ip=ip, user_agent=request.headers.get("user-agent"))


async def _principal(
    sessions: Annotated[Sessions, Depends(_sessions)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None:
        raise AuthFailed(code=ErrorCode.TOKEN_MISSING)
    return await sessions.authenticate(credentials.credentials)


AccountsPort = Annotated[Accounts, Depends(_accounts)]
SessionsPort = Annotated[Sessions, Depends(_sessions)]
KeysPort = Annotated[KeyRing, Depends(_keys)]
Caller = Annotated[Client, Depends(_client)]
CurrentUser = Annotated[Principal, Depends(_principal)]
