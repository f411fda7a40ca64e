"""One sync of one connector: the complete days since the last sync, page by page, into
the usage ledger like an upload; the outcome becomes the connector's visible state.

The window ends at the start of the last day that ended ``settle_s`` ago (a day still
receiving late usage is left for the next sync) and starts where the last successful
sync ended (the first sync goes back ``backfill_days``). A sync that fails keeps the
old start, so the next one pulls the same days again: their records are duplicates,
never stored twice. The next attempt is due after ``every_s``, after the provider's
``Retry-After`` when it asked to slow down, and after at most five minutes when it was
unavailable."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import httpx

from apex_contracts import ApexError, ErrorCode, Unavailable, new_id
from apex_ingest.commit import UsageCommitter
from apex_ingest.connectors import anthropic, openai
from apex_ingest.connectors.model import ConnectorConfig, ConnectorState, Window
from apex_ingest.metrics import IngestMetrics
from apex_ingest.parsing import Row
from apex_ingest.upload import Upload
from apex_runtime.leases import Lease

log = logging.getLogger(__name__)
UNAVAILABLE_RETRY_S = 300.0


class ProviderApi(Protocol):
    def pages(
        self, http: httpx.AsyncClient, base_url: str, admin_key: str, window: Window
    ) -> AsyncGenerator[dict[str, Any]]: ...

    def records(self, page: dict[str, Any], page_number: int) -> Iterator[Row]:
        """The page's records, a group that is not valid usage as a rejection."""
        ...


@dataclass(frozen=True)
class _Module:
    module: Any

    def pages(
        self, http: httpx.AsyncClient, base_url: str, admin_key: str, window: Window
    ) -> AsyncGenerator[dict[str, Any]]:
        pages: AsyncGenerator[dict[str, Any]] = self.module.pages(http, base_url, admin_key, window)
        return pages

    def records(self, page: dict[str, Any], page_number: int) -> Iterator[Row]:
        records: Iterator[Row] = self.module.records(page, page_number)
        return records


PROVIDERS: dict[str, ProviderApi] = {"openai": _Module(openai), "anthropic": _Module(anthropic)}


def day_start(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def window_for(config: ConnectorConfig, state: ConnectorState, now: datetime, settle_s: float) -> Window:
    end = day_start(now - timedelta(seconds=settle_s))
    start = state.synced_through or day_start(now) - timedelta(days=config.backfill_days)
    return Window(start=start, end=max(start, end))


class Sync:
    def __init__(
        self,
        committer: UsageCommitter,
        http: httpx.AsyncClient,
        metrics: IngestMetrics,
        *,
        settle_s: float,
        batch_rows: int,
        instance: str,
        clock: Callable[[], datetime],
    ) -> None:
        self.committer = committer
        self.http = http
        self.metrics = metrics
        self.settle_s = settle_s
        self.batch_rows = batch_rows
        self.instance = instance
        self.clock = clock

    async def run(
        self, config: ConnectorConfig, admin_key: str, state: ConnectorState, lease: Lease
    ) -> ConnectorState:
        """Pulls the window and answers the connector's new state (never raises an
        ApexError: a failure is the state's ``error``)."""
        now = self.clock()
        window = window_for(config, state, now, self.settle_s)
        attempt = state.model_copy(
            update={"last_attempt_at": now, "synced_by": self.instance, "last_window": window}
        )
        if window.start >= window.end:
            return attempt.model_copy(
                update={
                    "status": "ok",
                    "error": None,
                    "next_sync_at": now + timedelta(seconds=config.every_s),
                }
            )
        api = PROVIDERS[config.provider]
        upload = Upload(
            self.committer,
            config.tenant_id,
            config.created_by,
            config.provider,
            batch_rows=self.batch_rows,
            batch_id=new_id("upl"),
        )
        pages = 0
        try:
            async for page in api.pages(self.http, config.base_url, admin_key, window):
                pages += 1
                for row in api.records(page, pages):
                    await upload.add(row)
                if lease.lost:
                    raise Unavailable(
                        "The sync lost its lease to another replica.", code=ErrorCode.SERVICE_UNAVAILABLE
                    )
            await upload.flush()
        except ApexError as exc:
            await upload.abandon()
            self._count(config, upload, exc.code.value)
            log.warning("sync of %s %s failed: %s", config.tenant_id, config.provider, exc.message)
            return attempt.model_copy(
                update={
                    "status": "error",
                    "error": exc.info(),
                    "pages": pages,
                    "accepted": upload.accepted,
                    "duplicates": upload.duplicates,
                    "next_sync_at": now + timedelta(seconds=_retry_in(exc, config.every_s)),
                }
            )
        self._count(config, upload, "ok")
        log.info(
            "synced %s %s %s..%s: %d pages, %d new, %d duplicates",
            config.tenant_id,
            config.provider,
            window.start.date(),
            window.end.date(),
            pages,
            upload.accepted,
            upload.duplicates,
        )
        return attempt.model_copy(
            update={
                "status": "ok",
                "error": None,
                "synced_through": window.end,
                "last_success_at": now,
                "pages": pages,
                "accepted": upload.accepted,
                "duplicates": upload.duplicates,
                "next_sync_at": now + timedelta(seconds=config.every_s),
            }
        )

    def _count(self, config: ConnectorConfig, upload: Upload, outcome: str) -> None:
        self.metrics.syncs.labels(config.provider, outcome).inc()
        self.metrics.count(config.provider, upload.accepted, upload.duplicates, upload.rejected_total)


def _retry_in(exc: ApexError, every_s: int) -> float:
    if exc.code == ErrorCode.PROVIDER_RATE_LIMITED:
        return max(1.0, int((exc.details or {}).get("retry_after_ms", 60_000)) / 1000)
    if exc.retryable:
        return min(float(every_s), UNAVAILABLE_RETRY_S)
    return float(every_s)
