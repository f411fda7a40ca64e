"""``/auth/service-accounts``: a tenant admin creates, lists and revokes service accounts
(the gateway serves the same under ``/api/v1/service-accounts``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status

from apex_auth.deps import Caller, CurrentUser
from apex_auth.schemas import ErrorBody
from apex_auth.serviceaccounts.store import ServiceAccounts
from apex_contracts import validate_id
from apex_contracts.busapi import ServiceAccountCreate, ServiceAccountCreated, ServiceAccountList


def _service_accounts(request: Request) -> ServiceAccounts:
    accounts: ServiceAccounts = request.app.state.service.service_accounts
    return accounts


ServiceAccountsPort = Annotated[ServiceAccounts, Depends(_service_accounts)]

router = APIRouter(
    prefix="/auth/service-accounts",
    tags=["service-accounts"],
    responses={code: {"model": ErrorBody} for code in (400, 401, 403, 404, 422, 503)},
)


@router.post("", status_code=status.HTTP_201_CREATED)
async def create(
    body: ServiceAccountCreate, user: CurrentUser, accounts: ServiceAccountsPort, client: Caller
) -> ServiceAccountCreated:
    """A new principal of the caller's tenant and its NATS credentials (shown once)."""
    return await accounts.create(user, body.name, client)


@router.get("")
async def list_all(user: CurrentUser, accounts: ServiceAccountsPort) -> ServiceAccountList:
    """The tenant's service accounts, revoked ones included; never a seed."""
    return ServiceAccountList(service_accounts=await accounts.list(user))


@router.delete("/{account_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke(
    account_id: str, user: CurrentUser, accounts: ServiceAccountsPort, client: Caller
) -> Response:
    """Revokes the credentials: the bus closes their connections within seconds."""
    validate_id(account_id, "sva")
    await accounts.revoke(user, account_id, client)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
