"""Settings of the ingest service (``APEX_*`` environment variables)."""

from __future__ import annotations

import base64
import binascii

from pydantic import Field, SecretStr, field_validator, model_validator

from apex_contracts import auth
from apex_runtime import ServiceSettings


class IngestSettings(ServiceSettings):
    ingest_port: int = 8006
    redis_url: str = "redis://127.0.0.1:6379/0"
    auth_url: str = "http://127.0.0.1:8001"
    jwt_issuer: str = auth.ISSUER
    jwt_audience: str = auth.AUDIENCE
    jwks_min_refresh_s: float = Field(default=10.0, ge=0)
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_jwks_url: str | None = None
    oidc_tenant_claim: str = "tid"
    oidc_algorithms: list[str] = ["RS256", "ES256", "EdDSA"]
    upload_max_bytes: int = 64 * 1024 * 1024
    otlp_max_bytes: int = Field(default=32 * 1024 * 1024, description="an OTLP export, decompressed")
    # at most the duplicate check's keys per query (UsageFilter.dedup_keys)
    ingest_batch_rows: int = Field(default=5000, ge=1, le=10_000)
    connector_key: SecretStr | None = Field(
        default=None,
        description="32 bytes, base64: seals the providers' admin keys; required outside development",
    )
    connector_old_keys: list[SecretStr] = Field(
        default=[], description="earlier connector keys, still accepted to open what they sealed"
    )
    connector_allowed_hosts: list[str] = Field(
        default=["api.openai.com", "api.anthropic.com"],
        description="hosts a connector's base URL may name (a tenant must not make Apex call inside)",
    )
    connector_poll_s: float = Field(
        default=30.0, gt=0, description="how often each replica looks for due syncs"
    )
    connector_settle_s: float = Field(
        default=3600.0, ge=0, description="a day is synced once it ended this long ago (late usage settles)"
    )
    connector_timeout_s: float = Field(default=30.0, gt=0, description="one provider request")

    @model_validator(mode="after")
    def _oidc_complete(self) -> IngestSettings:
        parts = (self.oidc_issuer, self.oidc_audience, self.oidc_jwks_url)
        if any(parts) and not all(parts):
            raise ValueError("APEX_OIDC_ISSUER, APEX_OIDC_AUDIENCE and APEX_OIDC_JWKS_URL go together")
        return self

    @field_validator("connector_key", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if value in ("", None) else value

    @field_validator("connector_key", "connector_old_keys")
    @classmethod
    def _thirty_two_bytes(
        cls, value: SecretStr | list[SecretStr] | None
    ) -> SecretStr | list[SecretStr] | None:
        for key in [] if value is None else value if isinstance(value, list) else [value]:
            text = key.get_secret_value().strip()
            try:
                raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            except (binascii.Error, ValueError) as exc:
                raise ValueError("a connector key is 32 bytes in base64") from exc
            if len(raw) != 32:
                raise ValueError(f"a connector key is 32 bytes in base64, not {len(raw)} bytes")
        return value

    @model_validator(mode="after")
    def _sealing_key_outside_development(self) -> IngestSettings:
        if self.env != "development" and self.connector_key is None:
            raise ValueError(
                "APEX_CONNECTOR_KEY (32 random bytes, base64) must be set outside development: "
                "it seals the providers' admin keys"
            )
        return self

    @property
    def jwks_url(self) -> str:
        return self.auth_url.rstrip("/") + auth.JWKS_PATH
