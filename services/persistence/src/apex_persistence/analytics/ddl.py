"""Versioned ClickHouse DDL, the same on a server and on the embedded engine.

Each version is a list of idempotent statements; ``$db.schema_versions`` records the
versions applied. Add a version, never edit one that has shipped.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Final

from apex_persistence.analytics.port import AnalyticsStore
from apex_persistence.analytics.rows import ch_time

log = logging.getLogger(__name__)

_BOOTSTRAP: Final = (
    "CREATE DATABASE IF NOT EXISTS $db",
    """CREATE TABLE IF NOT EXISTS $db.schema_versions (
        version UInt32,
        applied_at DateTime64(3, 'UTC')
    ) ENGINE = ReplacingMergeTree ORDER BY version""",
)

VERSIONS: Final[tuple[tuple[int, tuple[str, ...]], ...]] = (
    (
        1,
        (
            # Keyed by event id: a redelivered event replaces itself; reads use FINAL.
            """CREATE TABLE IF NOT EXISTS $db.events (
            tenant_id String,
            user_id String,
            thread_id String,
            run_id Nullable(String),
            seq UInt64,
            id String,
            type LowCardinality(String),
            agent Nullable(String),
            occurred_at DateTime64(3, 'UTC'),
            duration_ms Nullable(UInt64),
            tool Nullable(String),
            status Nullable(String),
            tokens Nullable(UInt64),
            payload String
        ) ENGINE = ReplacingMergeTree ORDER BY (tenant_id, id)""",
            # Keyed by (tenant, dedup_key): re-uploading rows replaces them (latest ingest wins).
            """CREATE TABLE IF NOT EXISTS $db.llm_usage (
            tenant_id String,
            ts DateTime64(3, 'UTC'),
            provider LowCardinality(String),
            model LowCardinality(String),
            workload Nullable(String),
            prompt_tokens UInt64,
            completion_tokens UInt64,
            cached_tokens Nullable(UInt64),
            latency_ms Nullable(UInt64),
            status LowCardinality(String),
            cost_usd Float64,
            cost_source LowCardinality(String),
            prompt_hash Nullable(String),
            request_id Nullable(String),
            dedup_key String,
            ingested_at DateTime64(3, 'UTC')
        ) ENGINE = ReplacingMergeTree(ingested_at) ORDER BY (tenant_id, dedup_key)""",
            """CREATE TABLE IF NOT EXISTS $db.projection_checkpoints (
            name String,
            last_seq UInt64,
            updated_at DateTime64(3, 'UTC')
        ) ENGINE = ReplacingMergeTree(last_seq) ORDER BY name""",
            """CREATE TABLE IF NOT EXISTS $db.erased_threads (
            tenant_id String,
            thread_id String,
            seq UInt64,
            erased_at DateTime64(3, 'UTC')
        ) ENGINE = ReplacingMergeTree ORDER BY (tenant_id, thread_id)""",
        ),
    ),
    (
        2,
        (
            # Tombstones of erased users: their late events are dropped before insertion.
            """CREATE TABLE IF NOT EXISTS $db.erased_users (
            tenant_id String,
            user_id String,
            seq UInt64,
            erased_at DateTime64(3, 'UTC')
        ) ENGINE = ReplacingMergeTree ORDER BY (tenant_id, user_id)""",
        ),
    ),
    (
        3,
        (
            # Cache writes and reasoning tokens as current GenAI conventions report them;
            # the service tier (batch, flex, priority) the call was billed at.
            "ALTER TABLE $db.llm_usage ADD COLUMN IF NOT EXISTS cache_write_tokens Nullable(UInt64)",
            "ALTER TABLE $db.llm_usage ADD COLUMN IF NOT EXISTS reasoning_tokens Nullable(UInt64)",
            "ALTER TABLE $db.llm_usage ADD COLUMN IF NOT EXISTS service_tier LowCardinality(Nullable(String))",
        ),
    ),
    (
        4,
        (
            # An erasure covers the events before its tombstone and the later ones of the
            # runs it names (runs still going when it was written).
            "ALTER TABLE $db.erased_threads ADD COLUMN IF NOT EXISTS runs Array(String)",
            "ALTER TABLE $db.erased_users ADD COLUMN IF NOT EXISTS runs Array(String)",
        ),
    ),
)
LATEST: Final = VERSIONS[-1][0]


async def applied_versions(store: AnalyticsStore) -> set[int]:
    rows = await store.select("SELECT version FROM $db.schema_versions FINAL", {})
    return {int(row["version"]) for row in rows}


async def migrate_analytics(store: AnalyticsStore) -> list[int]:
    """Brings the analytics schema to the latest version; returns the versions applied now."""
    for statement in _BOOTSTRAP:
        await store.command(statement)
    done = await applied_versions(store)
    applied: list[int] = []
    for version, statements in VERSIONS:
        if version in done:
            continue
        for statement in statements:
            await store.command(statement)
        await store.insert(
            "schema_versions", [{"version": version, "applied_at": ch_time(datetime.now(UTC))}]
        )
        applied.append(version)
        log.info("analytics schema %s at version %d", store.database, version)
    return applied
