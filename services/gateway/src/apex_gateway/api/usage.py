"""Usage data in and the tenant's prices and summary out.

- ``POST /api/v1/usage``: JSON, NDJSON or CSV, streamed; answers ``{accepted, duplicates,
  rejected: [{line, error}]}``. Idempotent by ``request_id`` (else by the record's
  content): a record already stored, or seen earlier in the same upload, counts as a
  duplicate and is not sent again.
- ``POST /api/v1/usage/otlp``: OTLP/HTTP JSON traces with GenAI spans.
- ``GET|PUT /api/v1/usage/prices``: the tenant's price overrides (PUT: admins).
- ``GET /api/v1/usage/summary``: totals and per-model figures at the tenant's prices.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import APIRouter, Request
from pydantic import Field

from apex_contracts import InvalidInput, UsageIngest, UsageIngestData, UsageRecord, new_id, subjects, utcnow
from apex_contracts.envelope import Model
from apex_contracts.errors import ApexError, ErrorCode
from apex_contracts.price_table import models_in_table
from apex_contracts.pricing import PriceCatalogue, PriceOverride, TenantPrices
from apex_contracts.queries import (
    Q_USAGE_AGGREGATE,
    Q_USAGE_SUMMARY,
    UsageAggregate,
    UsageFilter,
    UsageRows,
    UsageSummary,
)
from apex_gateway import otlp
from apex_gateway.deps import CurrentAdmin, CurrentUser, Services
from apex_gateway.ingest import Rejected, Row, UploadInfo, detect_format, parse_csv, parse_json, parse_ndjson
from apex_gateway.prices import TenantPriceStore
from apex_gateway.services import GatewayServices
from apex_gateway.tokens import Principal

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1/usage", tags=["usage"])
MAX_REJECTED_LISTED = 1000
OTLP_MAX_BYTES = 32 * 1024 * 1024


class Upload:
    """One upload's way to the bus: batches of new records, duplicates counted and held
    back, rejections named (the first ``MAX_REJECTED_LISTED`` of them). One batch is
    checked and published while the next is read, so reading never waits for the store."""

    def __init__(self, services: GatewayServices, who: Principal, kind: str) -> None:
        self.services = services
        self.who = who
        self.kind = kind
        self.batch_id = new_id("upl")
        self.accepted = self.duplicates = self.rejected_total = 0
        self.rejected: list[dict[str, Any]] = []
        self.duplicates_checked = True
        self._seen: set[int] = set()  # hashes of this upload's record keys
        self._batch: list[UsageRecord] = []
        self._part = 0
        self.started = time.perf_counter()
        self.checking_s = self.publishing_s = 0.0
        self._inflight: asyncio.Task[None] | None = None

    async def add(self, row: Row) -> None:
        if isinstance(row, Rejected):
            self.rejected_total += 1
            if len(self.rejected) < MAX_REJECTED_LISTED:
                self.rejected.append({"line": row.line, "error": row.error})
            return
        key = hash(row.dedup_key())
        if key in self._seen:
            self.duplicates += 1
            return
        self._seen.add(key)
        self._batch.append(row)
        if len(self._batch) >= self.services.settings.ingest_batch_rows:
            await self.flush(wait=False)

    async def flush(self, *, wait: bool = True) -> None:
        """Sends the records read so far; with ``wait``, returns once all are sent."""
        if self._inflight is not None:
            await self._inflight  # at most one batch in flight: memory stays bounded
            self._inflight = None
        if self._batch:
            batch, self._batch = self._batch, []
            self._inflight = asyncio.create_task(self._send(batch))
        if wait and self._inflight is not None:
            await self._inflight
            self._inflight = None

    async def abandon(self) -> None:
        """Lets the batch in flight finish (a no-op when none is)."""
        if self._inflight is not None:
            await asyncio.gather(self._inflight, return_exceptions=True)
            self._inflight = None

    async def _send(self, batch: list[UsageRecord]) -> None:
        checking = time.perf_counter()
        known = await self._stored(batch)
        publishing = time.perf_counter()
        self.checking_s += publishing - checking
        fresh = [r for r in batch if r.dedup_key() not in known]
        self.duplicates += len(batch) - len(fresh)
        if fresh:
            command = UsageIngest(
                id=f"{self.batch_id}:{self._part}",
                tenant_id=self.who.tenant_id,
                user_id=self.who.user_id,
                data=UsageIngestData(batch_id=self.batch_id, source=self.kind, records=fresh),  # type: ignore[arg-type]
            )
            await self.services.bus.publish(command, subjects.CMD_USAGE_INGEST)
            self._part += 1
            self.accepted += len(fresh)
        self.publishing_s += time.perf_counter() - publishing

    async def _stored(self, batch: list[UsageRecord]) -> set[str]:
        """The keys of the batch already in ``llm_usage``; when the store cannot tell,
        none (the store still keeps one row per key) and the answer says so."""
        if not self.duplicates_checked:
            return set()
        keys = [r.dedup_key() for r in batch]
        query = UsageAggregate(
            tenant_id=self.who.tenant_id,
            group_by=["dedup_key"],
            metrics=["requests"],
            filter=UsageFilter(dedup_keys=keys),
            limit=len(keys),
        )
        try:
            found = await self.services.bus.query(Q_USAGE_AGGREGATE, query, UsageRows, timeout=30.0)
        except ApexError as exc:
            if exc.code not in (ErrorCode.STORE_UNAVAILABLE, ErrorCode.SERVICE_UNAVAILABLE):
                raise
            self.duplicates_checked = False
            return set()
        return {str(r["dedup_key"]) for r in found.rows}

    def answer(self, **extra: Any) -> dict[str, Any]:
        elapsed = time.perf_counter() - self.started
        log.info(
            "upload %s (%s): %d accepted, %d duplicates, %d rejected in %.1f s (duplicate checks %.1f s, "
            "publishing %.1f s)",
            self.batch_id,
            self.kind,
            self.accepted,
            self.duplicates,
            self.rejected_total,
            elapsed,
            self.checking_s,
            self.publishing_s,
        )
        return {
            "batch_id": self.batch_id,
            "format": self.kind,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "duplicates_checked": self.duplicates_checked,
            "rejected": self.rejected,
            "rejected_total": self.rejected_total,
            **extra,
        }


@router.post("")
async def upload_usage(request: Request, who: CurrentUser, services: Services) -> dict[str, Any]:
    """Keeps the good rows, names each bad one by line; idempotent by ``request_id``."""
    limit = services.settings.upload_max_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise InvalidInput(
            f"The upload is larger than {limit // (1024 * 1024)} MB.", code=ErrorCode.PAYLOAD_TOO_LARGE
        )
    upload = Upload(services, who, "csv")
    chunks = _limited(request.stream(), limit, upload)
    first = await anext(chunks, b"")
    upload.kind = detect_format(request.headers.get("content-type", ""), first)
    info = UploadInfo()
    body = _prepend(first, chunks)
    rows = {"csv": parse_csv(body, info), "ndjson": parse_ndjson(body), "json": parse_json(body)}[upload.kind]
    try:
        async for row in rows:
            await upload.add(row)
        await upload.flush()
    finally:
        await upload.abandon()  # a failed upload's batch in flight still completes
    return upload.answer(ignored_columns=info.ignored_columns)


@router.post("/otlp")
async def upload_otlp(request: Request, who: CurrentUser, services: Services) -> dict[str, Any]:
    """OTLP/HTTP JSON traces; GenAI spans become usage records, other spans are skipped."""
    if "protobuf" in request.headers.get("content-type", ""):
        raise InvalidInput(
            "Send OTLP/HTTP as JSON (Content-Type: application/json); protobuf is not accepted."
        )
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > OTLP_MAX_BYTES:
            raise InvalidInput(
                "An OTLP export is limited to 32 MB; send smaller batches.", code=ErrorCode.PAYLOAD_TOO_LARGE
            )
    try:
        document = orjson.loads(body)
        spans = list(otlp.rows(document))
    except (orjson.JSONDecodeError, ValueError) as exc:
        raise InvalidInput(f"Not an OTLP/HTTP JSON trace export: {exc}.") from exc
    upload = Upload(services, who, "otlp")
    for row in spans:
        if row is not None:
            await upload.add(row)
    await upload.flush()
    skipped = sum(1 for row in spans if row is None)
    partial = {
        "rejectedSpans": upload.rejected_total,
        "errorMessage": "; ".join(f"span {r['line']}: {r['error']}" for r in upload.rejected[:5]),
    }
    return upload.answer(skipped_spans=skipped, partialSuccess=partial)


class PricesIn(Model):
    overrides: list[PriceOverride] = Field(default=[], max_length=500)


@router.get("/prices")
async def get_prices(who: CurrentUser, services: Services) -> dict[str, Any]:
    """The price table (name and version) and the tenant's overrides, with the models of
    Apex's tier mapping at the price that applies to the tenant today."""
    stored = await TenantPriceStore(services.bus).get(who.tenant_id)
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
    await TenantPriceStore(services.bus).put(who.tenant_id, stored)
    return stored.model_dump(mode="json")


@router.get("/summary")
async def usage_summary(who: CurrentUser, services: Services) -> dict[str, Any]:
    prices = await TenantPriceStore(services.bus).get(who.tenant_id)
    return await services.bus.query_raw(
        Q_USAGE_SUMMARY, UsageSummary(tenant_id=who.tenant_id, prices=prices.overrides)
    )


async def _limited(chunks: AsyncIterator[bytes], limit: int, upload: Upload) -> AsyncIterator[bytes]:
    total = 0
    async for chunk in chunks:
        total += len(chunk)
        if total > limit:
            raise InvalidInput(
                f"The upload is larger than {limit // (1024 * 1024)} MB. At least the first {upload.accepted:,} "
                "records were stored; uploading the file again is safe (records are idempotent), in parts or as a "
                "smaller file.",
                code=ErrorCode.PAYLOAD_TOO_LARGE,
                details={"accepted_before_limit": upload.accepted},
            )
        if chunk:
            yield chunk


async def _prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if first:
        yield first
    async for chunk in rest:
        yield chunk
