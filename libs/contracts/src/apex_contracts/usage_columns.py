"""A batch of usage records column by column: how ingest publishes a batch on
``apex.cmd.usage.ingest.<tenant>`` and how persistence stores it.

Each record was validated as a ``UsageRecord`` where it came in (ingest is the only
publisher the bus allows on that subject). Read back, the batch is still checked, in
bulk: every column's type and bounds, and every column the same length. A column of
plain values costs a fraction of a model per record to decode and to encode, and it is
the shape an analytics store takes in one insert."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated

from pydantic import Field, model_validator

from apex_contracts.envelope import Model
from apex_contracts.usage import EARLIEST, ServiceTier, UsageRecord, UsageStatus

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
EARLIEST_MS = (EARLIEST - _EPOCH) // _MS

Tokens = Annotated[int, Field(ge=0, le=10_000_000)]
Moment = Annotated[int, Field(ge=EARLIEST_MS)]


def epoch_ms(moment: datetime) -> int:
    """A moment as whole milliseconds since the epoch, UTC (sub-milliseconds dropped, as
    ClickHouse's ``DateTime64(3)`` drops them)."""
    return (moment - _EPOCH) // _MS


def from_epoch_ms(ms: int) -> datetime:
    return _EPOCH + ms * _MS


class UsageColumns(Model):
    """The records of a batch, one list per field of ``UsageRecord`` (the i-th record is
    the i-th item of every list), plus ``ts_ms`` for ``ts`` (UTC milliseconds since the
    epoch) and each record's ``dedup_key``."""

    ts_ms: list[Moment]
    provider: list[Annotated[str, Field(min_length=1, max_length=64)]]
    model: list[Annotated[str, Field(min_length=1, max_length=128)]]
    workload: list[Annotated[str, Field(max_length=128)] | None]
    prompt_tokens: list[Tokens]
    completion_tokens: list[Tokens]
    cached_tokens: list[Tokens | None]
    cache_write_tokens: list[Tokens | None]
    reasoning_tokens: list[Tokens | None]
    latency_ms: list[Annotated[int, Field(ge=0, le=86_400_000)] | None]
    status: list[UsageStatus]
    cost_usd: list[Annotated[float, Field(ge=0, le=1_000_000)] | None]
    prompt_hash: list[Annotated[str, Field(max_length=128)] | None]
    request_id: list[Annotated[str, Field(max_length=200)] | None]
    service_tier: list[ServiceTier | None]
    dedup_key: list[Annotated[str, Field(min_length=1, max_length=200)]]

    @model_validator(mode="after")
    def _one_length(self) -> UsageColumns:
        lengths = {len(column) for column in self.__dict__.values()}
        if len(lengths) > 1:
            raise ValueError(f"every column has the same length (found {sorted(lengths)})")
        return self

    def __len__(self) -> int:
        return len(self.dedup_key)

    @classmethod
    def of(cls, records: Sequence[UsageRecord], keys: Sequence[str] | None = None) -> UsageColumns:
        """The columns of validated records (nothing is checked again); ``keys``, their
        ``dedup_key()`` when the caller has them already."""
        return cls.model_construct(
            ts_ms=[epoch_ms(r.ts) for r in records],
            provider=[r.provider for r in records],
            model=[r.model for r in records],
            workload=[r.workload for r in records],
            prompt_tokens=[r.prompt_tokens for r in records],
            completion_tokens=[r.completion_tokens for r in records],
            cached_tokens=[r.cached_tokens for r in records],
            cache_write_tokens=[r.cache_write_tokens for r in records],
            reasoning_tokens=[r.reasoning_tokens for r in records],
            latency_ms=[r.latency_ms for r in records],
            status=[r.status for r in records],
            cost_usd=[r.cost_usd for r in records],
            prompt_hash=[r.prompt_hash for r in records],
            request_id=[r.request_id for r in records],
            service_tier=[r.service_tier for r in records],
            dedup_key=list(keys) if keys is not None else [r.dedup_key() for r in records],
        )
