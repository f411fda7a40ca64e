"""The ``apex`` schema as SQLAlchemy Core tables: what the migrations create and the
queries use. Every tenant table carries ``tenant_id`` and a row-level security policy."""

from __future__ import annotations

import re
from typing import Final

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

SCHEMA: Final = "apex"
VERSION_TABLE: Final = "alembic_version_persistence"
READER_ROLE: Final = "apex_reader"
TENANT_SETTING: Final = "apex.tenant_id"

metadata = MetaData(schema=SCHEMA)


def _ts(name: str, *, nullable: bool = False) -> Column[object]:
    return Column(name, DateTime(timezone=True), nullable=nullable)


threads = Table(
    "threads",
    metadata,
    Column("id", Text, primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("user_id", Text, nullable=False),
    Column("title", Text, nullable=False, server_default=""),
    Column("title_seq", BigInteger, nullable=True),
    Column("title_source", Text, nullable=True),
    _ts("created_at"),
    _ts("updated_at"),
    _ts("deleted_at", nullable=True),
    CheckConstraint("title_source IN ('message', 'rename')", name="threads_title_source"),
    Index("threads_by_user", "tenant_id", "user_id", text("updated_at DESC"), text("id DESC")),
    Index("threads_by_updated", "updated_at"),
)

messages = Table(
    "messages",
    metadata,
    Column("id", Text, primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("thread_id", Text, nullable=False),
    Column("role", Text, nullable=False),
    Column("content", Text, nullable=False),
    Column("run_id", Text, nullable=True),
    Column("seq", BigInteger, nullable=False),
    _ts("created_at"),
    CheckConstraint("role IN ('user', 'assistant')", name="messages_role"),
    Index("messages_by_thread", "thread_id", "seq"),
)

runs = Table(
    "runs",
    metadata,
    Column("id", Text, primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("user_id", Text, nullable=False),
    Column("thread_id", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("status_seq", BigInteger, nullable=False, server_default="0"),
    _ts("started_at", nullable=True),
    _ts("ended_at", nullable=True),
    Column("duration_ms", Integer, nullable=True),
    Column("tool_calls", Integer, nullable=False, server_default="0"),
    Column("llm_tokens", BigInteger, nullable=False, server_default="0"),
    Column("reported_tokens", BigInteger, nullable=True),
    Column("llm_cost_usd", Float, nullable=True),
    Column("error_code", Text, nullable=True),
    _ts("updated_at"),
    CheckConstraint(
        "status IN ('accepted', 'running', 'completed', 'needs_data', 'failed', 'cancelled')",
        name="runs_status",
    ),
    Index("runs_by_thread", "thread_id"),
)

events = Table(
    "events",
    metadata,
    Column("id", Text, primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("tenant_id", Text, nullable=False),
    Column("user_id", Text, nullable=False),
    Column("thread_id", Text, nullable=False),
    Column("run_id", Text, nullable=True),
    Column("type", Text, nullable=False),
    _ts("occurred_at"),
    Column("payload", JSONB, nullable=False),
    Index("events_by_thread", "thread_id", "seq"),
    Index("events_by_seq", "seq"),
)

projection_checkpoints = Table(
    "projection_checkpoints",
    metadata,
    Column("name", Text, primary_key=True),
    Column("last_seq", BigInteger, nullable=False),
    _ts("updated_at"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Text, primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("tenant_id", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("outcome", Text, nullable=False),
    _ts("at"),
    Column("actor_user_id", Text, nullable=True),
    Column("session_id", Text, nullable=True),
    Column("source_ip", Text, nullable=True),
    Column("service", Text, nullable=False),
    Column("target", Text, nullable=True),
    Column("details", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Index("audit_by_tenant", "tenant_id", text("at DESC"), text("id DESC")),
)

erasures = Table(
    "erasures",
    metadata,
    Column("tenant_id", Text, nullable=False),
    Column("target", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("user_id", Text, nullable=False),
    Column("thread_id", Text, nullable=True),
    Column("seq", BigInteger, nullable=False),
    Column("event_id", Text, nullable=False),
    Column("requested_by", Text, nullable=False),
    _ts("requested_at"),
    _ts("purged_at", nullable=True),
    _ts("audited_at", nullable=True),
    # the runs the tombstone names: their events after it are erased too
    Column("runs", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    PrimaryKeyConstraint("tenant_id", "target", name="erasures_pkey"),
    CheckConstraint("kind IN ('thread', 'user')", name="erasures_kind"),
    Index("erasures_by_user", "tenant_id", "user_id"),
    Index("erasures_by_thread", "thread_id"),
    Index("erasures_pending", "seq", postgresql_where=text("purged_at IS NULL OR audited_at IS NULL")),
)

# Not a view of the log: the gateway's acknowledged seq per user and thread (flushed
# from Redis), so a lost Redis key never replays a whole thread.
delivery_cursors = Table(
    "delivery_cursors",
    metadata,
    Column("tenant_id", Text, nullable=False),
    Column("user_id", Text, nullable=False),
    Column("thread_id", Text, nullable=False),
    Column("seq", BigInteger, nullable=False),
    _ts("updated_at"),
    PrimaryKeyConstraint("tenant_id", "user_id", "thread_id", name="delivery_cursors_pkey"),
    CheckConstraint("seq >= 0", name="delivery_cursors_seq"),
    Index("delivery_cursors_by_thread", "tenant_id", "thread_id"),
)

TENANT_TABLES: Final = (threads, messages, runs, events, audit_log, delivery_cursors)
# The tables a rebuild recreates from the log and swaps in (the rest are not views).
VIEW_TABLES: Final = (threads, messages, runs, events)
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def schema_name(schema: str) -> str:
    """``schema`` when it is a plain lower-case identifier (it is spliced into SQL)."""
    if not _SCHEMA_NAME.match(schema):
        raise ValueError(f"{schema!r} is not a schema name")
    return schema


def view_tables_in(schema: str) -> dict[str, Table]:
    """The view tables as they are (or will be) in ``schema``: same columns, constraints
    and index names as in ``apex``."""
    target = MetaData(schema=schema_name(schema))
    return {table.name: table.to_metadata(target, schema=schema) for table in VIEW_TABLES}
