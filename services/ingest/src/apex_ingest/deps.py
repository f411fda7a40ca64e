"""What a request handler may use, built once by the composition root, and the FastAPI
dependencies as Annotated aliases, so routes read like prose."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Header, Request

from apex_contracts import Forbidden
from apex_ingest.commit import UsageCommitter
from apex_ingest.metrics import IngestMetrics
from apex_ingest.settings import IngestSettings
from apex_runtime import Health
from apex_runtime.tokens import Principal, TokenVerifier

if TYPE_CHECKING:
    from apex_ingest.connectors.service import Connectors


@dataclass
class IngestServices:
    settings: IngestSettings
    verifier: TokenVerifier
    committer: UsageCommitter
    connectors: Connectors
    health: Health
    metrics: IngestMetrics


def get_services(request: Request) -> IngestServices:
    services: IngestServices = request.app.state.services
    return services


Services = Annotated[IngestServices, Depends(get_services)]


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
