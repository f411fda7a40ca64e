"""The bus API's ``usage.ingest``: NDJSON usage records from a service account, stored by
the same upload path as ``POST /api/v1/usage`` and answered with the same body (plus
``"type": "usage.ingested"``), or an ``error`` frame. The tenant and user are the
subject's, which the NATS server bound to the caller's credentials (docs/bus-api.md)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from apex_contracts.busapi import INGEST_QUEUE, OP_USAGE_INGEST
from apex_ingest.commit import UsageCommitter
from apex_ingest.metrics import IngestMetrics
from apex_ingest.readers import ndjson_blocks
from apex_ingest.upload import Upload
from apex_runtime import Bus
from apex_runtime.busresponder import BusApiResponder


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


class IngestBusApi:
    def __init__(
        self, bus: Bus, committer: UsageCommitter, metrics: IngestMetrics, *, batch_rows: int
    ) -> None:
        self._committer = committer
        self._metrics = metrics
        self._batch_rows = batch_rows
        self._responder = BusApiResponder(bus, OP_USAGE_INGEST, INGEST_QUEUE, self.usage_ingest)

    async def start(self) -> None:
        await self._responder.start()

    async def stop(self) -> None:
        await self._responder.stop()

    async def usage_ingest(self, tenant_id: str, user_id: str, data: bytes) -> dict[str, Any]:
        upload = Upload(self._committer, tenant_id, user_id, "ndjson", batch_rows=self._batch_rows)
        try:
            async for block in ndjson_blocks(_once(data)):
                await upload.add_block(block)
            await upload.flush()
        finally:
            await upload.abandon()  # a failed upload's batch in flight still completes
        self._metrics.count(upload.kind, upload.accepted, upload.duplicates, upload.rejected_total)
        return {"type": "usage.ingested", **upload.answer()}
