"""Settings refuse what would be unsafe, and the DSN is rewritten for asyncpg."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from apex_auth import AuthSettings
from apex_auth.db import redacted
from apex_runtime.pg import async_dsn

PRODUCTION = {
    "env": "production",
    "nats_url": "nats://nats.internal:4222",
    "postgres_dsn": "postgresql://auth:Zq8vT3mW6pLx@db.internal:5432/apex",
    "redis_url": "redis://redis.internal:6379/0",
    "auth_key_passphrase": "a long enough passphrase",
}


def test_local_defaults_work_in_development() -> None:
    settings = AuthSettings(_env_file=None)
    assert settings.auth_port == 8001 and settings.jwt_access_ttl_s == 900
    assert settings.revocation_ttl_s >= 900
    assert settings.key_retire_after_s > settings.jwt_access_ttl_s + settings.auth_key_cache_s


def test_production_accepts_real_settings() -> None:
    assert AuthSettings(**PRODUCTION).env == "production"


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"postgres_dsn": "postgresql://postgres@127.0.0.1:5432/apex"}, "APEX_POSTGRES_DSN"),
        ({"redis_url": "redis://127.0.0.1:6379/0"}, "APEX_REDIS_URL"),
        ({"auth_key_passphrase": None}, "APEX_AUTH_KEY_PASSPHRASE"),
        ({"auth_key_passphrase": "change-me-in-production"}, "APEX_AUTH_KEY_PASSPHRASE"),
        ({"postgres_dsn": "postgresql://auth:secret@db.internal:5432/apex"}, "APEX_POSTGRES_DSN"),
        ({"auth_argon2_memory_kib": 8192}, "OWASP"),
        (
            {"oidc_issuer": "https://idp", "oidc_audience": "apex", "oidc_jwks_url": "http://idp/jwks"},
            "https",
        ),
    ],
)
def test_production_refuses_insecure_defaults(change: dict[str, object], complaint: str) -> None:
    with pytest.raises(ValidationError, match=complaint):
        AuthSettings(**{**PRODUCTION, **change})


def test_access_tokens_never_live_longer_than_fifteen_minutes() -> None:
    with pytest.raises(ValidationError):
        AuthSettings(jwt_access_ttl_s=901)


def test_oidc_settings_come_together() -> None:
    with pytest.raises(ValidationError, match="go together"):
        AuthSettings(oidc_issuer="https://idp.example")


def test_dsn_is_rewritten_for_asyncpg_and_redacted_in_messages() -> None:
    assert async_dsn("postgresql://u:p@h:5432/d") == "postgresql+asyncpg://u:p@h:5432/d"
    assert async_dsn("postgres://h/d") == "postgresql+asyncpg://h/d"
    with pytest.raises(ValueError, match="postgresql://"):
        async_dsn("mysql://h/d")
    assert redacted("postgresql://u:secret@h:5432/d") == "postgresql://u:***@h:5432/d"
