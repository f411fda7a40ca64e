"""One upload's way to the usage ledger: batches of new records, duplicates counted and
held back, rejections named (the first ``MAX_REJECTED_LISTED`` of them). One batch is
committed while the next is read, so reading never waits for the store; the answer is
given only once every batch is committed (``commit.py``), so an upload of the same
records right after it counts them as duplicates."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from apex_contracts import UsageRecord, new_id
from apex_ingest.commit import UploadCommits, UsageCommitter
from apex_ingest.parsing import Rejected, Row

log = logging.getLogger(__name__)
MAX_REJECTED_LISTED = 1000
# Rows read between two turns given to the event loop: parsing never suspends by itself
# (the body is read a megabyte at a time), and the batch being committed meanwhile waits
# for the loop at each of its round trips (lease, duplicate check, publish).
YIELD_EVERY = 200


class Upload:
    def __init__(
        self,
        committer: UsageCommitter,
        tenant_id: str,
        user_id: str | None,
        kind: str,
        *,
        batch_rows: int,
        batch_id: str | None = None,
    ) -> None:
        self.committer = committer
        self.kind = kind
        self.batch_rows = batch_rows
        self.batch_id = batch_id or new_id("upl")
        self.commits: UploadCommits = committer.begin(tenant_id, user_id, self.batch_id, kind)
        self.accepted = self.duplicates = self.rejected_total = 0
        self.rejected: list[dict[str, Any]] = []
        self._seen: set[int] = set()  # hashes of this upload's record keys
        self._batch: list[UsageRecord] = []
        self._keys: list[str] = []  # the batch's dedupe keys
        self.started = time.perf_counter()
        self.committing_s = 0.0
        self._inflight: asyncio.Task[None] | None = None
        self._unyielded = 0

    @property
    def duplicates_checked(self) -> bool:
        return self.commits.duplicates_checked

    async def add(self, row: Row) -> None:
        self._unyielded += 1
        if self._unyielded >= YIELD_EVERY:
            self._unyielded = 0
            await asyncio.sleep(0)
        if self._take(row) and len(self._batch) >= self.batch_rows:
            await self.flush(wait=False)

    async def add_block(self, rows: list[Row]) -> None:
        """``add`` for each row of a block (``readers.py``), giving the loop one turn."""
        for row in rows:
            if self._take(row) and len(self._batch) >= self.batch_rows:
                await self.flush(wait=False)
        await asyncio.sleep(0)

    def _take(self, row: Row) -> bool:
        """Counts a rejected row or a duplicate within the upload; True when the row joined
        the batch."""
        if isinstance(row, Rejected):
            self.rejected_total += 1
            if len(self.rejected) < MAX_REJECTED_LISTED:
                self.rejected.append({"line": row.line, "error": row.error})
            return False
        key = row.dedup_key()
        hashed = hash(key)
        if hashed in self._seen:
            self.duplicates += 1
            return False
        self._seen.add(hashed)
        self._batch.append(row)
        self._keys.append(key)
        return True

    async def flush(self, *, wait: bool = True) -> None:
        """Commits the records read so far; with ``wait``, returns once all are committed
        and the tenant's ledger is given back to other uploads."""
        if self._inflight is not None:
            await self._inflight  # at most one batch in flight: memory stays bounded
            self._inflight = None
        if self._batch:
            batch, keys, self._batch, self._keys = self._batch, self._keys, [], []
            self._inflight = asyncio.create_task(self._commit(batch, keys, keep=not wait))
        if wait:
            if self._inflight is not None:
                await self._inflight
                self._inflight = None
            await self.committer.end(self.commits)

    async def abandon(self) -> None:
        """Lets the batch in flight finish (a no-op when none is) and gives the ledger back."""
        if self._inflight is not None:
            await asyncio.gather(self._inflight, return_exceptions=True)
            self._inflight = None
        await self.committer.end(self.commits)

    async def _commit(self, batch: list[UsageRecord], keys: list[str], *, keep: bool) -> None:
        started = time.perf_counter()
        outcome = await self.committer.commit(self.commits, batch, keep=keep, keys=keys)
        self.accepted += outcome.accepted
        self.duplicates += outcome.duplicates
        self.committing_s += time.perf_counter() - started

    def answer(self, **extra: Any) -> dict[str, Any]:
        elapsed = time.perf_counter() - self.started
        log.info(
            "upload %s (%s): %d accepted, %d duplicates, %d rejected in %.1f s (committing %.1f s)",
            self.batch_id,
            self.kind,
            self.accepted,
            self.duplicates,
            self.rejected_total,
            elapsed,
            self.committing_s,
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
