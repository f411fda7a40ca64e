"""Usage data in (``POST /api/v1/usage``) and the tenant's summary out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request

from apex_contracts import InvalidInput, UsageIngest, UsageIngestData, UsageRecord, new_id, subjects
from apex_contracts.errors import ErrorCode
from apex_contracts.queries import Q_USAGE_SUMMARY, UsageSummary
from apex_gateway.deps import CurrentUser, Services
from apex_gateway.ingest import Rejected, detect_format, parse_csv, parse_json, parse_ndjson
from apex_gateway.services import GatewayServices
from apex_gateway.tokens import Principal

router = APIRouter(prefix="/api/v1/usage", tags=["usage"])
MAX_REJECTED_LISTED = 1000


@router.post("")
async def upload_usage(request: Request, who: CurrentUser, services: Services) -> dict[str, Any]:
    """Keeps the good rows, names each bad one by line; idempotent by ``request_id``."""
    chunks = _limited(request.stream(), services.settings.upload_max_bytes)
    first = await anext(chunks, b"")
    kind = detect_format(request.headers.get("content-type", ""), first)
    body = _prepend(first, chunks)
    rows = {"csv": parse_csv(body), "ndjson": parse_ndjson(body),
            "json": parse_json(body, services.settings.upload_max_bytes)}[kind]
    batch_id = new_id("upl")
    accepted = duplicates = rejected_total = 0
    rejected: list[dict[str, Any]] = []
    seen: set[str] = set()
    batch: list[UsageRecord] = []
    part = 0
    async for row in rows:
        if isinstance(row, Rejected):
            rejected_total += 1
            if len(rejected) < MAX_REJECTED_LISTED:
                rejected.append({"line": row.line, "error": row.error})
            continue
        if row.request_id is not None:
            if row.request_id in seen:
                duplicates += 1
                continue
            seen.add(row.request_id)
        batch.append(row)
        accepted += 1
        if len(batch) >= services.settings.ingest_batch_rows:
            await _send(services, who, batch_id, part, kind, batch)
            part, batch = part + 1, []
    if batch:
        await _send(services, who, batch_id, part, kind, batch)
    return {"batch_id": batch_id, "format": kind, "accepted": accepted, "duplicates": duplicates,
            "rejected": rejected, "rejected_total": rejected_total}


@router.get("/summary")
async def usage_summary(who: CurrentUser, services: Services) -> dict[str, Any]:
    return await services.bus.query_raw(Q_USAGE_SUMMARY, UsageSummary(tenant_id=who.tenant_id))


async def _send(
    services: GatewayServices, who: Principal, batch_id: str, part: int, kind: str, records: list[UsageRecord]
) -> None:
    command = UsageIngest(
        id=f"{batch_id}:{part}", tenant_id=who.tenant_id, user_id=who.user_id,
        data=UsageIngestData(batch_id=batch_id, source=kind, records=records),  # type: ignore[arg-type]
    )
    await services.bus.publish(command, subjects.CMD_USAGE_INGEST)


async def _limited(chunks: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    total = 0
    async for chunk in chunks:
        total += len(chunk)
        if total > limit:
            raise InvalidInput(f"The upload is larger than {limit // (1024 * 1024)} MB.",
                               code=ErrorCode.PAYLOAD_TOO_LARGE)
        if chunk:
            yield chunk


async def _prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if first:
        yield first
    async for chunk in rest:
        yield chunk
