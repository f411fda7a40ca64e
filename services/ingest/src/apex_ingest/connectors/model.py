"""A provider connector as stored (its configuration and its sync state, two keys of the
``apex_connectors`` bucket, so the API and a sync never overwrite each other) and as
shown to its tenant (never the admin key: only its last four characters)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field, SecretStr

from apex_contracts import ErrorInfo
from apex_contracts.envelope import Model

Provider = Literal["openai", "anthropic"]
DEFAULT_BASE_URLS: dict[str, str] = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
}


class ConnectIn(Model):
    admin_key: SecretStr = Field(min_length=8, max_length=512)
    base_url: str | None = Field(default=None, max_length=300, description="default: the provider's API")
    every_s: int = Field(default=3600, ge=60, le=7 * 86_400, description="how often to sync")
    backfill_days: int = Field(default=30, ge=1, le=365, description="days pulled by the first sync")


class ConnectorConfig(Model):
    tenant_id: str
    provider: Provider
    base_url: str
    sealed_key: str
    key_hint: str
    every_s: int
    backfill_days: int
    created_by: str
    created_at: datetime


class Window(Model):
    start: datetime
    end: datetime


class ConnectorState(Model):
    status: Literal["never", "ok", "error"] = "never"
    synced_through: datetime | None = None  # every complete day before this is in
    last_attempt_at: datetime | None = None
    last_success_at: datetime | None = None
    next_sync_at: datetime | None = None
    last_window: Window | None = None
    accepted: int = 0
    duplicates: int = 0
    pages: int = 0
    error: ErrorInfo | None = None
    synced_by: str | None = None


class ConnectorView(Model):
    provider: Provider
    base_url: str
    key_hint: str
    every_s: int
    backfill_days: int
    created_by: str
    created_at: datetime
    state: ConnectorState

    @classmethod
    def of(cls, config: ConnectorConfig, state: ConnectorState) -> ConnectorView:
        return cls(
            provider=config.provider,
            base_url=config.base_url,
            key_hint=config.key_hint,
            every_s=config.every_s,
            backfill_days=config.backfill_days,
            created_by=config.created_by,
            created_at=config.created_at,
            state=state,
        )
