"""FastAPI dependencies, as ``Annotated`` aliases so routes read like prose."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from apex_auth.accounts import Accounts
from apex_auth.closure import AccountClosure
from apex_auth.keys import KeyRing
from apex_auth.model import Client, Principal
from apex_auth.service import AuthService
from apex_auth.sessions import Sessions
from apex_contracts import AuthFailed, ErrorCode
from apex_runtime.clientaddr import client_address

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


def _closure(service: Service) -> AccountClosure:
    return service.closure


def _client(request: Request, service: Service) -> Client:
    """The caller's address: X-Forwarded-For followed past the operator's trusted proxies
    (``APEX_TRUSTED_PROXIES``), or the address ``auth_forwarded_hops`` fixed proxies saw,
    or the socket peer; never an address a caller could choose (``apex_runtime.clientaddr``)."""
    peer = request.client.host if request.client else None
    ip = client_address(
        peer,
        request.headers.get("x-forwarded-for"),
        service.trusted,
        hops=service.settings.auth_forwarded_hops,
    )
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
ClosurePort = Annotated[AccountClosure, Depends(_closure)]
Caller = Annotated[Client, Depends(_client)]
CurrentUser = Annotated[Principal, Depends(_principal)]
