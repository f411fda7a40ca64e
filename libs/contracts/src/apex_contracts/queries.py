"""The read API over NATS request/reply (``apex.q.<name>``), served by persistence.

Every request names its tenant; persistence refuses one without it. Replies are
``QueryReply``: ``ok`` with ``data``, or an ``error`` with a stable code.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from apex_contracts.envelope import Model
from apex_contracts.errors import ErrorInfo
from apex_contracts.ids import RunId, TenantId, ThreadId, UserId
from apex_contracts.pricing import PriceOverride

Q_THREADS_LIST = "threads.list"
Q_THREADS_GET = "threads.get"
Q_RUNS_GET = "runs.get"
Q_RUNS_RECENT = "runs.recent"
Q_EVENTS_ARCHIVE = "events.archive"
Q_USAGE_AGGREGATE = "usage.aggregate"
Q_USAGE_SUMMARY = "usage.summary"
Q_AUDIT_LIST = "audit.list"
Q_CURSOR_GET = "cursor.get"
Q_CURSOR_FLUSH = "cursor.flush"


class QueryReply(Model):
    ok: bool
    data: dict[str, Any] | None = None
    error: ErrorInfo | None = None


class TenantQuery(Model):
    tenant_id: TenantId


class UserQuery(TenantQuery):
    user_id: UserId


class ThreadsList(UserQuery):
    limit: int = Field(default=50, ge=1, le=200)
    cursor: str | None = None
    search: str | None = Field(default=None, max_length=200)


class ThreadSummary(Model):
    id: str
    title: str
    created_at: datetime
    updated_at: datetime


class ThreadsPage(Model):
    threads: list[ThreadSummary]
    next_cursor: str | None = None


class ThreadGet(UserQuery):
    thread_id: ThreadId


class ChatMessage(Model):
    id: str
    role: Literal["user", "assistant"]
    content: str
    run_id: str | None = None
    created_at: datetime


class ThreadDetail(Model):
    id: str
    title: str
    created_at: datetime
    updated_at: datetime
    messages: list[ChatMessage]


class RunGet(UserQuery):
    run_id: RunId


class RunsRecent(TenantQuery):
    """The tenant's latest runs, newest first (the tenant admin's dashboard)."""

    limit: int = Field(default=25, ge=1, le=200)


class RecentRun(Model):
    id: str
    user_id: str
    thread_id: str
    status: str
    started_at: datetime | None = None
    ended_at: datetime | None = None
    duration_ms: int | None = None
    tool_calls: int = 0
    error_code: str | None = None


class RunsPage(Model):
    runs: list[RecentRun]


class EventsArchive(UserQuery):
    thread_id: ThreadId
    after_seq: int = Field(default=0, ge=0)
    limit: int = Field(default=500, ge=1, le=5000)
    # the window a replay needs from the archive ends before this seq (the stream's first):
    # the page names the seq ranges of the window the archive never received
    before_seq: int | None = Field(default=None, ge=1)


class ArchivedEvent(Model):
    seq: int
    event: dict[str, Any]


class EventsPage(Model):
    events: list[ArchivedEvent]
    first_seq: int | None = None
    last_seq: int | None = None
    # The seq ranges (inclusive) of (after_seq, before_seq) the archive never received
    # (the stream dropped them before they were archived): neither can give them. None:
    # not asked (no before_seq), or the archive keeps no record of what it received.
    missing: list[tuple[int, int]] | None = None


# --- delivery cursors (the gateway's acks, made durable) -----------------------------------

CURSOR_FLUSH_MAX = 1000


class CursorGet(UserQuery):
    """The stored delivery cursor of one user on one thread."""

    thread_id: ThreadId


class CursorPosition(Model):
    """``seq`` is the highest acknowledged seq; 0 when nothing was stored."""

    seq: int = Field(ge=0)


class CursorEntry(Model):
    user_id: UserId
    thread_id: ThreadId
    seq: int = Field(ge=0)


class CursorFlush(TenantQuery):
    """Cursors of one tenant to store. The one write on ``apex.q``: the gateway needs the
    reply (stored, or keep the cursors and retry); each entry only ever moves its cursor
    forward, so a repeated or reordered flush changes nothing."""

    entries: list[CursorEntry] = Field(min_length=1, max_length=CURSOR_FLUSH_MAX)


class CursorsStored(Model):
    """``stored``: cursors that moved forward (not those already as far, nor those of
    an erased user or thread)."""

    stored: int = Field(ge=0)


Dimension = Literal[
    "model", "provider", "workload", "day", "hour", "hour_of_day", "status", "prompt_hash", "dedup_key"
]
Metric = Literal[
    "requests",
    "cost_usd",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "cost_sources",
    "latency_avg",
    "latency_p50",
    "latency_p95",
    "latency_p99",
    "prompt_tokens_p50",
    "prompt_tokens_p95",
    "prompt_tokens_max",
    "errors",
    "error_cost_usd",
    "active_days",
    "first_ts",
    "last_ts",
    "with_latency",
    "with_cost",
    "with_workload",
    "with_cached",
    "with_prompt_hash",
    "with_request_id",
    "distinct_prompts",
]


class UsageFilter(Model):
    start: datetime | None = None
    end: datetime | None = None
    models: list[str] = []
    providers: list[str] = []
    workloads: list[str] = []
    statuses: list[str] = []
    dedup_keys: list[str] = Field(default=[], max_length=10_000)
    min_prompt_tokens: int | None = Field(default=None, ge=0)


class UsageAggregate(TenantQuery):
    """A typed aggregate over ``llm_usage``; persistence compiles it to SQL from a
    whitelist, so no caller ever sends SQL. ``prices`` are the tenant's price overrides:
    cost metrics reprice every row without an uploaded cost whose model they name.

    ``grouping_sets`` (instead of ``group_by``) asks for several groupings in one pass
    over the rows: each row names its set in ``grouping_set`` (an index into the list),
    the dimensions outside its set are None, and ``min_requests``, ``order_by`` and
    ``limit`` apply within each set (ties ordered by the set's dimensions in the order
    they first appear in ``grouping_sets``). An empty set is the totals: one row, even
    when no usage matches (as without any grouping)."""

    group_by: list[Dimension] = []
    grouping_sets: list[list[Dimension]] = Field(default=[], max_length=8)
    metrics: list[Metric] = Field(min_length=1)
    filter: UsageFilter = UsageFilter()
    min_requests: int = Field(default=0, ge=0)
    order_by: Metric | None = None
    descending: bool = True
    limit: int = Field(default=1000, ge=1, le=10_000)
    prices: list[PriceOverride] = Field(default=[], max_length=500)

    @model_validator(mode="after")
    def _one_grouping(self) -> UsageAggregate:
        if self.grouping_sets and self.group_by:
            raise ValueError("give group_by or grouping_sets, not both")
        if len({frozenset(s) for s in self.grouping_sets}) < len(self.grouping_sets):
            raise ValueError("grouping_sets must differ from one another")
        return self


class UsageRows(Model):
    rows: list[dict[str, Any]]
    sql: str
    elapsed_ms: float


class UsageSummary(TenantQuery):
    start: datetime | None = None
    end: datetime | None = None
    prices: list[PriceOverride] = Field(default=[], max_length=500)


class AuditList(TenantQuery):
    limit: int = Field(default=100, ge=1, le=1000)
    before: datetime | None = None
    actions: list[str] = []


class AuditPage(Model):
    entries: list[dict[str, Any]]
    next_before: datetime | None = None


# --- service levels (the operators' dashboard) -------------------------------------------

Q_SLA_SUMMARY = "sla.summary"
SLA_DEFAULT_WINDOWS_S: tuple[int, ...] = (300, 3600, 86_400)


class SlaSummary(TenantQuery):
    """Service levels of the tenant's runs over trailing windows (seconds), from the
    analytics event table: time to first event, run duration, errors by code."""

    windows_s: list[Annotated[int, Field(ge=60, le=30 * 86_400)]] = Field(
        default=list(SLA_DEFAULT_WINDOWS_S), min_length=1, max_length=6
    )


class Percentiles(Model):
    """p50/p95/p99 in milliseconds over ``count`` samples; None when there are none."""

    count: int = 0
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None


class ErrorCount(Model):
    source: Literal["run", "tool"]
    code: str
    tool: str | None = None
    count: int


class SlaWindow(Model):
    window_s: int
    runs: int
    runs_by_status: dict[str, int] = {}
    tool_calls: int
    time_to_first_event_ms: Percentiles
    run_duration_ms: Percentiles
    errors: list[ErrorCount] = []


class SlaView(Model):
    """``time_to_first_event_ms``: from the user's message (``message.created``) to the
    run's first lifecycle event; ``run_duration_ms``: the terminal event's duration."""

    generated_at: datetime
    windows: list[SlaWindow]
