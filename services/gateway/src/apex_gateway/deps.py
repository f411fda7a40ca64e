"""FastAPI dependencies as Annotated aliases, so routes read like prose."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from apex_contracts import Forbidden
from apex_gateway.services import GatewayServices
from apex_gateway.tokens import Principal


def get_services(request: Request) -> GatewayServices:
    return request.app.state.services  # type: ignore[no-any-return]


Services = Annotated[GatewayServices, Depends(get_services)]


async def current_principal(
    services: Services, authorization: Annotated[str | None, Header()] = None
) -> Principal:
    token = None
    if authorization and authorization.lower().startswith("bearer "):
        token = authorization[7:].strip()
    return await services.verifier.verify(token)


CurrentUser = Annotated[Principal, Depends(current_principal)]


async def current_admin(who: CurrentUser) -> Principal:
    if not who.is_admin:
        raise Forbidden("This needs the admin role.")
    return who


CurrentAdmin = Annotated[Principal, Depends(current_admin)]


async def current_operator(who: CurrentUser) -> Principal:
    if not who.is_operator:
        raise Forbidden("This needs the operator role of the platform.")
    return who


CurrentOperator = Annotated[Principal, Depends(current_operator)]
