"""Read-your-writes ingest: a batch of usage records is committed under its dedupe keys,
so the next upload of the same records, however soon, counts them as duplicates, and
uploads of the same records running side by side store and count them once.

A tenant's batches wait on their own subject (``apex.cmd.usage.ingest.<tenant>``) until
persistence has stored them in ``llm_usage``, and are removed from it once stored (a
work queue). So every record already committed is either still on that subject or in
``llm_usage``. Committing a batch, under the tenant's lease (one committer at a time,
whatever the replica):

1. read the tenant's batches still waiting that this upload has not seen yet;
2. ask ``llm_usage`` which of the remaining keys it holds;
3. publish the records found in neither, as one batch on the tenant's subject.

Reading the waiting batches before asking the store matters: a batch removed in between
was stored before it was removed, so the store's answer has it. The lease makes 1-3
atomic for the tenant; a holder that stalls past its lease could let a concurrent upload
count a record twice (never store it twice: ``llm_usage`` keeps one row per key), and
the lease is checked once more just before publishing.

An upload keeps the lease from one batch to the next for up to ``LEASE_HOLD_S``
(``commit(keep=True)``) and gives it back at its end (``end``): taking a lease is a compare-and-set on the bus, three round
trips behind the fsync'd writes of the batches, which cost more than the batch's own
checks when it was taken for every batch.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field

import orjson
import stamina
from pydantic import ValidationError

from apex_contracts import (
    ErrorCode,
    Unavailable,
    UsageColumns,
    UsageIngest,
    UsageIngestData,
    UsageRecord,
    subjects,
)
from apex_contracts.dedupe_ids import usage_ingest_id
from apex_contracts.errors import ApexError
from apex_contracts.queries import Q_USAGE_AGGREGATE, UsageAggregate, UsageFilter, UsageRows
from apex_contracts.streams import APEX_CMD
from apex_runtime import Bus
from apex_runtime.leases import Lease, Leases

log = logging.getLogger(__name__)
LEASE_TTL_S = 30.0
LEASE_WAIT_S = 120.0
LEASE_HOLD_S = 2.0
STORE_QUERY_TIMEOUT_S = 30.0
ATTEMPTS = 3


@dataclass
class Committed:
    accepted: int
    duplicates: int


@dataclass
class UploadCommits:
    """One upload's (or one sync's) commits for one tenant. ``duplicates_checked`` turns
    false when the store could not say which records it holds (they are sent anyway:
    the store still keeps one row per key)."""

    tenant_id: str
    user_id: str | None
    batch_id: str
    source: str
    duplicates_checked: bool = True
    parts: int = 0
    _cursor: int = 0  # the tenant subject is read up to here
    _own: set[int] = field(default_factory=set)  # stream sequences this upload published
    _waiting: set[int] = field(default_factory=set)  # hashed keys of other uploads' waiting batches
    _lease: Lease | None = None  # the tenant's lease, kept between batches
    _held: contextlib.AsyncExitStack | None = None  # its renewals
    _lease_since: float = 0.0


class _LeaseSlipped(Exception):
    """The tenant's lease was lost while the batch was checked: nothing was published."""


class UsageCommitter:
    def __init__(self, bus: Bus, leases: Leases, *, lease_ttl_s: float = LEASE_TTL_S) -> None:
        self.bus = bus
        self.leases = leases
        self.lease_ttl_s = lease_ttl_s

    def begin(self, tenant_id: str, user_id: str | None, batch_id: str, source: str) -> UploadCommits:
        return UploadCommits(tenant_id, user_id, batch_id, source)

    async def commit(
        self,
        upload: UploadCommits,
        batch: list[UsageRecord],
        *,
        keep: bool = False,
        keys: list[str] | None = None,
    ) -> Committed:
        """Commits the batch's new records; returns how many were new and how many were
        already committed. Raises Unavailable when the bus or the lease cannot be had.
        With ``keep`` (more batches follow), the upload may keep the tenant's lease for
        its next batch: the caller then ends with ``end``. ``keys``: the records'
        ``dedup_key()`` when the caller has them already."""
        keys = keys if keys is not None else [r.dedup_key() for r in batch]
        # A lease that slipped while the batch was checked is the one retried condition:
        # another committer may have gone ahead, so the batch is looked at again.
        retrying = stamina.AsyncRetryingCaller(
            attempts=ATTEMPTS, timeout=None, wait_initial=0.05, wait_max=0.5, wait_jitter=0.05
        )
        try:
            return await retrying(_LeaseSlipped, self._commit_under_lease, upload, batch, keys, keep)
        except TimeoutError as exc:
            raise Unavailable(
                "Another upload of this tenant holds the usage ledger; try again shortly.",
                code=ErrorCode.SERVICE_UNAVAILABLE,
            ) from exc
        except _LeaseSlipped as exc:
            raise Unavailable(
                "The usage ledger's lease kept slipping; try again.", code=ErrorCode.BUS_UNAVAILABLE
            ) from exc

    async def end(self, upload: UploadCommits) -> None:
        """Gives the tenant's lease back (a no-op when the upload holds none)."""
        held, upload._held, upload._lease = upload._held, None, None
        if held is not None:
            await held.aclose()

    async def _lease_for(self, upload: UploadCommits) -> Lease:
        """The tenant's lease: the one the upload keeps, else taken (waiting its turn)."""
        if upload._lease is not None and not upload._lease.lost:
            return upload._lease
        await self.end(upload)
        held = contextlib.AsyncExitStack()
        lease_name = f"usage.{upload.tenant_id}"
        upload._lease = await held.enter_async_context(
            self.leases.hold(lease_name, self.lease_ttl_s, wait_s=LEASE_WAIT_S)
        )
        upload._held, upload._lease_since = held, time.monotonic()
        return upload._lease

    async def _commit_under_lease(
        self, upload: UploadCommits, batch: list[UsageRecord], keys: list[str], keep: bool
    ) -> Committed:
        lease = await self._lease_for(upload)
        try:
            await self._read_waiting(upload)
            waiting = upload._waiting
            keyed = [(r, k) for r, k in zip(batch, keys, strict=True) if hash(k) not in waiting]
            stored = await self._stored(upload, [k for _, k in keyed])
            fresh = [(r, k) for r, k in keyed if k not in stored]
            if lease.lost:
                raise _LeaseSlipped(lease.name)
            if fresh:
                await self._publish(upload, [r for r, _ in fresh], [k for _, k in fresh])
        except BaseException:
            await self.end(upload)
            raise
        if not keep or time.monotonic() - upload._lease_since >= LEASE_HOLD_S:
            await self.end(upload)  # other uploads of the tenant get their turn
        return Committed(len(fresh), len(batch) - len(fresh))

    async def _read_waiting(self, upload: UploadCommits) -> None:
        """Adds the keys of the tenant's batches published since the last look (by other
        uploads) that persistence has not stored yet."""
        subject = subjects.usage_ingest(upload.tenant_id)
        async for seq, data in self.bus.read_subject(subject, after_seq=upload._cursor, stream=APEX_CMD.name):
            upload._cursor = seq
            if seq in upload._own:
                continue
            for key in _keys_of(data):
                upload._waiting.add(hash(key))

    async def _stored(self, upload: UploadCommits, keys: list[str]) -> set[str]:
        if not upload.duplicates_checked or not keys:
            return set()
        query = UsageAggregate(
            tenant_id=upload.tenant_id,
            group_by=["dedup_key"],
            metrics=["requests"],
            filter=UsageFilter(dedup_keys=keys),
            limit=len(keys),
        )
        try:
            found = await self.bus.query(Q_USAGE_AGGREGATE, query, UsageRows, timeout=STORE_QUERY_TIMEOUT_S)
        except ApexError as exc:
            if exc.code not in (ErrorCode.STORE_UNAVAILABLE, ErrorCode.SERVICE_UNAVAILABLE):
                raise
            log.warning("duplicate check of %s without the store: %s", upload.batch_id, exc.message)
            upload.duplicates_checked = False
            return set()
        return {str(r["dedup_key"]) for r in found.rows}

    async def _publish(self, upload: UploadCommits, records: list[UsageRecord], keys: list[str]) -> None:
        command = UsageIngest(
            id=usage_ingest_id(upload.batch_id, upload.parts),
            tenant_id=upload.tenant_id,
            user_id=upload.user_id,
            data=UsageIngestData(
                batch_id=upload.batch_id, source=upload.source, columns=UsageColumns.of(records, keys)
            ),
        )
        seq = await self.bus.publish(command, subjects.usage_ingest(upload.tenant_id))
        upload.parts += 1
        upload._own.add(seq)
        upload._cursor = max(upload._cursor, seq)


def _keys_of(data: bytes) -> list[str]:
    """The dedupe keys of a waiting batch (as persistence will store them)."""
    try:
        command = UsageIngest.model_validate_json(data)
    except ValidationError:
        try:
            raw = orjson.loads(data)
        except orjson.JSONDecodeError:
            return []
        log.warning("an unreadable usage batch waits on the tenant subject: %s", str(raw)[:200])
        return []  # persistence dead-letters it: it will never be stored
    return command.data.batch().dedup_key
