"""One LLM call of a tenant's workload, as uploaded and as stored in ``llm_usage``."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from typing import Literal

import orjson
from pydantic import AwareDatetime, Field, field_validator, model_validator

from apex_contracts.envelope import Model

_LOCAL_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?$")
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
EARLIEST = datetime(2015, 1, 1, tzinfo=UTC)  # before any LLM API: a unit or parsing mistake
FUTURE_SLACK = timedelta(days=1)

UsageStatus = Literal["ok", "error", "rate_limited", "timeout"]
USAGE_FIELDS: tuple[str, ...] = (
    "ts",
    "provider",
    "model",
    "workload",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "latency_ms",
    "status",
    "cost_usd",
    "prompt_hash",
    "request_id",
    "cache_write_tokens",
    "reasoning_tokens",
    "service_tier",
)
# Fields a record may lack; the analyst reports them as data gaps.
OPTIONAL_USAGE_FIELDS: tuple[str, ...] = (
    "workload",
    "cached_tokens",
    "latency_ms",
    "cost_usd",
    "prompt_hash",
    "request_id",
    "cache_write_tokens",
    "reasoning_tokens",
    "service_tier",
)
# Added after the first release: left out of the content hash while unset, so records
# uploaded before they existed keep their dedup key.
_LATER_FIELDS: frozenset[str] = frozenset({"cache_write_tokens", "reasoning_tokens", "service_tier"})
ServiceTier = Literal["default", "batch", "flex", "priority", "scale"]


class UsageRecord(Model):
    ts: AwareDatetime
    provider: str = Field(min_length=1, max_length=64)
    model: str = Field(min_length=1, max_length=128)
    workload: str | None = Field(default=None, max_length=128)
    prompt_tokens: int = Field(ge=0, le=10_000_000)
    completion_tokens: int = Field(ge=0, le=10_000_000)
    cached_tokens: int | None = Field(default=None, ge=0, le=10_000_000)
    latency_ms: int | None = Field(default=None, ge=0, le=86_400_000)
    status: UsageStatus = "ok"
    cost_usd: float | None = Field(default=None, ge=0, le=1_000_000)
    prompt_hash: str | None = Field(default=None, max_length=128)
    request_id: str | None = Field(default=None, max_length=200)
    # Token counts follow one convention whatever the provider: ``prompt_tokens`` is every
    # input token, cache reads (``cached_tokens``) and cache writes (``cache_write_tokens``)
    # included; ``reasoning_tokens`` are part of ``completion_tokens``.
    cache_write_tokens: int | None = Field(default=None, ge=0, le=10_000_000)
    reasoning_tokens: int | None = Field(default=None, ge=0, le=10_000_000)
    service_tier: ServiceTier | None = None

    @field_validator("ts", mode="before")
    @classmethod
    def _naive_is_utc(cls, value: object) -> object:
        if isinstance(value, datetime) and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        if isinstance(value, str) and _LOCAL_TIME.match(value.strip()):
            # "2026-01-05T10:00:00" without an offset: UTC, as every export we know writes
            return value.strip() + "+00:00"
        if isinstance(value, str) and _DATE_ONLY.match(value.strip()):
            return value.strip() + "T00:00:00+00:00"  # a daily export's bucket
        return value

    @field_validator("ts")
    @classmethod
    def _plausible_time(cls, value: datetime) -> datetime:
        if value < EARLIEST:
            raise ValueError(
                f"is before {EARLIEST.date().isoformat()}: check the unit (seconds or milliseconds)"
            )
        if value > datetime.now(UTC) + FUTURE_SLACK:
            raise ValueError("is in the future")
        return value

    @field_validator(
        "prompt_tokens",
        "completion_tokens",
        "cached_tokens",
        "cache_write_tokens",
        "reasoning_tokens",
        "latency_ms",
        "cost_usd",
        mode="before",
    )
    @classmethod
    def _not_a_boolean(cls, value: object) -> object:
        if isinstance(value, bool):
            raise ValueError("must be a number, not true/false")
        return value

    @field_validator("status", "service_tier", mode="before")
    @classmethod
    def _status_case(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("provider", "model")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.strip().lower()

    @model_validator(mode="after")
    def _cached_within_prompt(self) -> UsageRecord:
        if self.cached_tokens is not None and self.cached_tokens > self.prompt_tokens:
            raise ValueError("cached_tokens cannot exceed prompt_tokens")
        cache_io = (self.cached_tokens or 0) + (self.cache_write_tokens or 0)
        if self.cache_write_tokens is not None and cache_io > self.prompt_tokens:
            raise ValueError("cached_tokens + cache_write_tokens cannot exceed prompt_tokens")
        if self.reasoning_tokens is not None and self.reasoning_tokens > self.completion_tokens:
            raise ValueError("reasoning_tokens cannot exceed completion_tokens")
        return self

    def dedup_key(self) -> str:
        """The record's identity in ``llm_usage``: its ``request_id`` when it has one,
        otherwise a hash of every field, so the same row uploaded twice is one row.
        (The same rule as persistence's ``rows.dedup_key``, which stores it.)"""
        if self.request_id:
            return self.request_id
        fields = self.model_dump(mode="json")
        for name in _LATER_FIELDS:
            if fields[name] is None:
                del fields[name]
        canonical = orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)
        return "h_" + hashlib.sha256(canonical).hexdigest()[:32]
