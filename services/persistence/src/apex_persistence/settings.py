"""Settings of the persistence service (``APEX_*`` environment variables)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from apex_runtime import ServiceSettings

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@dataclass(frozen=True)
class Retention:
    """Days each store keeps (0 = forever)."""

    postgres_days: int = 0
    audit_days: int = 0
    clickhouse_days: int = 0
    usage_days: int = 0

    @staticmethod
    def cutoff(days: int, now: datetime | None = None) -> datetime | None:
        return None if days <= 0 else (now or datetime.now(UTC)) - timedelta(days=days)


class PersistenceSettings(ServiceSettings):
    postgres_dsn: str = "postgresql://postgres@127.0.0.1:5432/apex"
    redis_url: str = "redis://127.0.0.1:6379/0"
    clickhouse_url: str | None = Field(
        default=None, description="a ClickHouse server; unset = the embedded engine (chdb)"
    )
    clickhouse_database: str = "apex"
    clickhouse_cluster: str | None = Field(
        default=None,
        description="a replicated ClickHouse cluster (remote_servers name): DDL runs ON CLUSTER with"
        " Replicated engines; unset: one server",
    )
    chdb_path: Path = Path(".apex/chdb")
    persistence_port: int = 8005
    projection_batch: int = Field(default=500, ge=1, le=5000)
    projection_linger_s: float = Field(
        default=0.02, ge=0, le=5, description="how long a projector gathers a batch (Postgres, Redis)"
    )
    analytics_linger_s: float = Field(
        default=0.1,
        ge=0,
        le=5,
        description="how long the ClickHouse projector gathers a batch: fewer, larger inserts"
        " leave the engine free for the tools' queries",
    )
    analytics_checkpoint_every_s: float = Field(
        default=1.0,
        ge=0,
        le=60,
        description="how often the ClickHouse projector writes its checkpoint (and when the log"
        " goes quiet); 0: after every batch. A crash applies up to this much of the log again",
    )
    projection_lease_ttl_s: float = Field(
        default=10.0,
        ge=1,
        le=300,
        description="how long a store's projector lease outlives its holder: a crashed"
        " replica's stores are taken over by another within it",
    )
    redis_recent_events: int = Field(default=100, ge=0, le=10_000)
    redis_ttl_s: int = Field(default=7 * 86_400, ge=60)
    migrate_on_start: bool = Field(
        default=True, description="apply the Postgres migrations when the service starts"
    )
    retention_postgres_days: int = Field(default=0, ge=0, description="threads idle longer go; 0 keeps all")
    retention_audit_days: int = Field(default=0, ge=0, description="audit entries older go; 0 keeps all")
    retention_clickhouse_days: int = Field(
        default=0, ge=0, description="analytics events older go; 0 keeps all"
    )
    retention_usage_days: int = Field(default=0, ge=0, description="llm_usage rows older go; 0 keeps all")
    retention_sweep_s: float = Field(default=3600.0, gt=0, description="how often retention is applied")
    eraser_every_s: float = Field(default=1.0, gt=0, description="how often pending erasures are finished")
    rebuild_batch: int = Field(default=1000, ge=1, le=10_000, description="events per rebuild batch")

    def retention(self) -> Retention:
        return Retention(
            postgres_days=self.retention_postgres_days,
            audit_days=self.retention_audit_days,
            clickhouse_days=self.retention_clickhouse_days,
            usage_days=self.retention_usage_days,
        )

    @field_validator("clickhouse_database")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not _IDENTIFIER.match(value):
            raise ValueError("APEX_CLICKHOUSE_DATABASE must be a lower-case SQL identifier")
        return value

    @field_validator("clickhouse_url")
    @classmethod
    def _blank_is_unset(cls, value: str | None) -> str | None:
        return value or None

    @model_validator(mode="after")
    def _cluster_needs_a_server(self) -> PersistenceSettings:
        if self.clickhouse_cluster and not self.clickhouse_url:
            raise ValueError(
                "APEX_CLICKHOUSE_CLUSTER needs APEX_CLICKHOUSE_URL (the embedded engine is one node)"
            )
        if self.clickhouse_cluster and not _IDENTIFIER.match(self.clickhouse_cluster.lower()):
            raise ValueError("APEX_CLICKHOUSE_CLUSTER must be a cluster name (letters, digits, _)")
        return self

    @model_validator(mode="after")
    def _production_needs_real_stores(self) -> PersistenceSettings:
        if self.env == "production":
            for name in ("postgres_dsn", "redis_url"):
                if "127.0.0.1" in getattr(self, name):
                    raise ValueError(f"APEX_{name.upper()} must point at a real server in production")
        return self
