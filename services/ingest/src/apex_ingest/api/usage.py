"""Usage data in over HTTP.

- ``POST /api/v1/usage``: JSON, NDJSON or CSV (gzip or not), streamed; answers
  ``{accepted, duplicates, rejected: [{line, error}]}`` once every new record is
  committed. Idempotent by ``request_id`` (else by the record's content).
- ``POST /api/v1/usage/otlp`` and ``POST /v1/traces`` (the OTLP/HTTP path): trace
  exports as protobuf or JSON, gzip or not; GenAI spans become usage records. The answer
  is the OTLP ``ExportTraceServiceResponse`` in the request's encoding, with
  ``partial_success`` naming the rejected spans (JSON answers also carry Apex's counts).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, Response

from apex_contracts import ErrorCode, InvalidInput
from apex_ingest import otlp
from apex_ingest.body import decoded, encoding_of, read_all
from apex_ingest.deps import CurrentUser, IngestServices, Services
from apex_ingest.parsing import UploadInfo, detect_format
from apex_ingest.readers import blocks_of
from apex_ingest.upload import Upload
from apex_runtime.tokens import Principal

router = APIRouter(tags=["usage"])
PROTOBUF_TYPES = ("application/x-protobuf", "application/protobuf")


def _upload(services: IngestServices, who: Principal, kind: str) -> Upload:
    return Upload(
        services.committer, who.tenant_id, who.user_id, kind, batch_rows=services.settings.ingest_batch_rows
    )


@router.post("/api/v1/usage")
async def upload_usage(request: Request, who: CurrentUser, services: Services) -> dict[str, Any]:
    """Keeps the good rows, names each bad one by line; idempotent by ``request_id``."""
    limit = services.settings.upload_max_bytes
    encoding = encoding_of(request.headers.get("content-encoding"))
    declared = request.headers.get("content-length")
    if encoding == "identity" and declared and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit, 0)
    upload = _upload(services, who, "csv")
    chunks = decoded(request.stream(), encoding, limit, lambda: _too_large(limit, upload.accepted))
    first = await anext(chunks, b"")
    upload.kind = detect_format(request.headers.get("content-type", ""), first)
    info = UploadInfo()
    body = _prepend(first, chunks)
    try:
        async for block in blocks_of(upload.kind, body, info):
            await upload.add_block(block)
        await upload.flush()
    finally:
        await upload.abandon()  # a failed upload's batch in flight still completes
    services.metrics.count(upload.kind, upload.accepted, upload.duplicates, upload.rejected_total)
    return upload.answer(ignored_columns=info.ignored_columns)


@router.post("/api/v1/usage/otlp", response_class=Response)
async def upload_otlp(request: Request, who: CurrentUser, services: Services) -> Response:
    """OTLP/HTTP traces, protobuf or JSON; GenAI spans become usage records, other
    spans are skipped, malformed GenAI spans are rejected (``partial_success``)."""
    return await _export(request, who, services)


@router.post("/v1/traces", response_class=Response)
async def otlp_traces(request: Request, who: CurrentUser, services: Services) -> Response:
    """The standard OTLP/HTTP traces path: point an exporter's endpoint at the server."""
    return await _export(request, who, services)


async def _export(request: Request, who: Principal, services: IngestServices) -> Response:
    limit = services.settings.otlp_max_bytes
    kind = request.headers.get("content-type", "").split(";", maxsplit=1)[0].strip().lower()
    body = await read_all(
        request.stream(),
        encoding_of(request.headers.get("content-encoding")),
        limit,
        lambda: InvalidInput(
            f"An OTLP export is limited to {limit // (1024 * 1024)} MB; send smaller batches.",
            code=ErrorCode.PAYLOAD_TOO_LARGE,
        ),
    )
    protobuf = kind in PROTOBUF_TYPES or (kind != "application/json" and not body.lstrip().startswith(b"{"))
    try:
        spans = list(otlp.rows(otlp.spans_of(body, protobuf=protobuf)))
    except ValueError as exc:
        raise InvalidInput(f"Not an OTLP/HTTP trace export: {exc}.") from exc
    upload = _upload(services, who, "otlp")
    try:
        for row in spans:
            if row is not None:
                await upload.add(row)
        await upload.flush()
    finally:
        await upload.abandon()
    services.metrics.count("otlp", upload.accepted, upload.duplicates, upload.rejected_total)
    answer = upload.answer(skipped_spans=sum(1 for row in spans if row is None))
    message = "; ".join(f"span {r['line']}: {r['error']}" for r in upload.rejected[:5])
    content, media = otlp.export_response(
        "protobuf" if protobuf else "json", upload.rejected_total, message, answer
    )
    return Response(content, media_type=media)


def _too_large(limit: int, accepted: int) -> InvalidInput:
    return InvalidInput(
        f"The upload is larger than {limit // (1024 * 1024)} MB. At least the first {accepted:,} "
        "records were stored; uploading the file again is safe (records are idempotent), in parts or as a "
        "smaller file.",
        code=ErrorCode.PAYLOAD_TOO_LARGE,
        details={"accepted_before_limit": accepted},
    )


async def _prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if first:
        yield first
    async for chunk in rest:
        yield chunk
