"""Apex persistence: the event log projected into Postgres (history), Redis (hot) and
ClickHouse (analytics), the usage ingest consumer, and the read API over NATS."""

from apex_persistence.analytics.port import AnalyticsStore, ChdbStore, ClickHouseServerStore, open_store
from apex_persistence.analytics.usage import UsageLedger
from apex_persistence.bootstrap import PersistenceService, main, run_migrations
from apex_persistence.eraser import Eraser
from apex_persistence.hot import HotViews, RedisProjection
from apex_persistence.postgres.projector import AuditProjection, PostgresProjection
from apex_persistence.postgres.reads import HistoryReads
from apex_persistence.projection.delivery import Delivery
from apex_persistence.projection.ports import Projection
from apex_persistence.projection.runner import LagMonitor, ProjectorRunner
from apex_persistence.rebuild.control import Rebuilder
from apex_persistence.rebuild.procedure import RebuildReport
from apex_persistence.retention import RetentionSweeper
from apex_persistence.settings import PersistenceSettings, Retention

__all__ = [
    "AnalyticsStore",
    "AuditProjection",
    "ChdbStore",
    "ClickHouseServerStore",
    "Delivery",
    "Eraser",
    "HistoryReads",
    "HotViews",
    "LagMonitor",
    "PersistenceService",
    "PersistenceSettings",
    "PostgresProjection",
    "Projection",
    "ProjectorRunner",
    "RebuildReport",
    "Rebuilder",
    "RedisProjection",
    "Retention",
    "RetentionSweeper",
    "UsageLedger",
    "main",
    "open_store",
    "run_migrations",
]
