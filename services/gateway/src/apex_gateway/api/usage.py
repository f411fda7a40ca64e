"""The tenant's prices and usage summary (usage data in goes to the ingest service:
``apex_gateway.ingestproxy``).

- ``GET|PUT /api/v1/usage/prices``: the tenant's price overrides (PUT: admins).
- ``GET /api/v1/usage/summary``: totals and per-model figures at the tenant's prices.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import Field

from apex_contracts import utcnow
from apex_contracts.envelope import Model
from apex_contracts.price_table import models_in_table
from apex_contracts.pricing import PriceCatalogue, PriceOverride, TenantPrices
from apex_gateway.deps import CurrentAdmin, CurrentUser, Services

router = APIRouter(prefix="/api/v1/usage", tags=["usage"])


class PricesIn(Model):
    overrides: list[PriceOverride] = Field(default=[], max_length=500)


@router.get("/prices")
async def get_prices(who: CurrentUser, services: Services) -> dict[str, Any]:
    """The price table (name and version) and the tenant's overrides, with the models of
    Apex's tier mapping at the price that applies to the tenant today."""
    stored = await services.prices.get(who.tenant_id)
    catalogue = PriceCatalogue.for_tenant(stored)
    return {
        "table": catalogue.table,
        "as_of": catalogue.table,
        "models_in_table": models_in_table(),
        "currency": catalogue.currency,
        "overrides": stored.model_dump(mode="json"),
        "models": [
            m.model_dump(mode="json") | {"override": catalogue.is_override(m)} for m in catalogue.models()
        ],
    }


@router.put("/prices")
async def put_prices(body: PricesIn, who: CurrentAdmin, services: Services) -> dict[str, Any]:
    """Replaces the tenant's overrides (an empty list removes them); reprices every row
    without an uploaded cost at once, since prices are applied where they are read."""
    stored = TenantPrices(overrides=body.overrides, updated_at=utcnow(), updated_by=who.user_id)
    await services.prices.put(who.tenant_id, stored)
    return stored.model_dump(mode="json")


@router.get("/summary")
async def usage_summary(who: CurrentUser, services: Services) -> dict[str, Any]:
    return await services.reads.usage_summary(who.tenant_id)
