"""Heartbeats every process publishes on ``apex.health.<service>.<instance>``."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from apex_contracts.envelope import Model, utcnow

SERVICES: tuple[str, ...] = ("gateway", "auth", "orchestrator", "agents", "tools", "persistence", "ingest")
HEARTBEAT_INTERVAL_S = 2.0
HEARTBEAT_STALE_S = 6.0


class Heartbeat(Model):
    service: str
    instance: str
    started_at: datetime
    at: datetime = Field(default_factory=utcnow)
    status: Literal["ok", "degraded", "stopping"] = "ok"
    ready: bool = True
    http_port: int | None = None
    breakers: dict[str, str] = {}
    details: dict[str, float | int | str] = {}
