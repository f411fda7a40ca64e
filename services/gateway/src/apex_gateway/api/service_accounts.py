"""``/api/v1/service-accounts``: a tenant admin's service accounts (NATS credentials for
the bus API, docs/bus-api.md). The auth service owns principals, so it creates, lists and
revokes them (``/auth/service-accounts``); the gateway checks the role first and passes
the request on."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from apex_contracts import validate_id
from apex_contracts.busapi import ServiceAccountCreate, ServiceAccountCreated, ServiceAccountList
from apex_gateway.authproxy import AuthProxy
from apex_gateway.deps import CurrentAdmin

router = APIRouter(prefix="/api/v1/service-accounts", tags=["service-accounts"])
_AUTH_PATH = "service-accounts"


def _proxy(request: Request) -> AuthProxy:
    proxy: AuthProxy = request.app.state.auth_proxy
    return proxy


@router.post("", status_code=201, response_model=ServiceAccountCreated)
async def create_service_account(body: ServiceAccountCreate, who: CurrentAdmin, request: Request) -> Response:
    """A new principal of the tenant with its own ``user_id``; ``creds`` (a standard NATS
    credentials file: user JWT and seed) is shown this once."""
    del body, who  # validated here, enforced again by auth
    return await _proxy(request).forward(request, _AUTH_PATH)


@router.get("", response_model=ServiceAccountList)
async def list_service_accounts(who: CurrentAdmin, request: Request) -> Response:
    """The tenant's service accounts, revoked ones included; never a seed."""
    del who
    return await _proxy(request).forward(request, _AUTH_PATH)


@router.delete("/{account_id}", status_code=204, response_class=Response)
async def revoke_service_account(account_id: str, who: CurrentAdmin, request: Request) -> Response:
    """Revokes the credentials: the NATS servers close their connections within seconds."""
    del who
    validate_id(account_id, "sva")
    return await _proxy(request).forward(request, f"{_AUTH_PATH}/{account_id}")
