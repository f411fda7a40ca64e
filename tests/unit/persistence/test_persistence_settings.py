"""Settings come from APEX_* variables, with local defaults and production refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from apex_persistence.settings import PersistenceSettings


def test_defaults_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "APEX_POSTGRES_DSN",
        "APEX_REDIS_URL",
        "APEX_CLICKHOUSE_URL",
        "APEX_CHDB_PATH",
        "APEX_PERSISTENCE_PORT",
        "APEX_ENV",
    ):
        monkeypatch.delenv(name, raising=False)
    settings = PersistenceSettings()
    assert settings.postgres_dsn == "postgresql://postgres@127.0.0.1:5432/apex"
    assert (settings.clickhouse_url, settings.chdb_path, settings.persistence_port) == (
        None,
        Path(".apex/chdb"),
        8005,
    )

    monkeypatch.setenv("APEX_POSTGRES_DSN", "postgresql://apex@db:5432/apex")
    monkeypatch.setenv("APEX_CLICKHOUSE_URL", "http://default@ch:8123")
    monkeypatch.setenv("APEX_CHDB_PATH", "/data/chdb")
    monkeypatch.setenv("APEX_PERSISTENCE_PORT", "9005")
    settings = PersistenceSettings()
    assert settings.postgres_dsn == "postgresql://apex@db:5432/apex"
    assert (settings.clickhouse_url, settings.chdb_path, settings.persistence_port) == (
        "http://default@ch:8123",
        Path("/data/chdb"),
        9005,
    )
    monkeypatch.setenv("APEX_CLICKHOUSE_URL", "")
    assert PersistenceSettings().clickhouse_url is None


def test_production_refuses_local_stores_and_bad_database_names() -> None:
    with pytest.raises(ValidationError, match="APEX_POSTGRES_DSN"):
        PersistenceSettings(env="production", nats_url="nats://nats:4222", redis_url="redis://redis:6379/0")
    with pytest.raises(ValidationError, match="identifier"):
        PersistenceSettings(clickhouse_database="apex; DROP")
