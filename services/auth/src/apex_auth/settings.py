"""Settings of the auth service: ``APEX_*`` environment variables with local defaults.

Outside development the defaults that only make sense on a laptop are refused at
start-up: a password-less Postgres on localhost, a local Redis, private signing keys
stored without a passphrase, or Argon2 parameters below the OWASP minimum.
"""

from __future__ import annotations

import os

from pydantic import Field, SecretStr, field_validator, model_validator

from apex_auth.passwords import slots_for_memory
from apex_auth.serviceaccounts.settings import ServiceAccountSettings
from apex_contracts.auth import ACCESS_TOKEN_MAX_TTL_S, AUDIENCE, ISSUER
from apex_contracts.ids import UserId
from apex_runtime.clientaddr import trusted_networks

DEFAULT_POSTGRES_DSN = "postgresql://postgres@127.0.0.1:5432/apex"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

# OWASP password storage cheat sheet: Argon2id with at least 19 MiB, 2 passes, 1 lane.
ARGON2_MIN_MEMORY_KIB = 19 * 1024
ARGON2_MIN_TIME_COST = 2


class AuthSettings(ServiceAccountSettings):
    postgres_dsn: str = DEFAULT_POSTGRES_DSN
    postgres_pool_size: int = Field(default=5, ge=1, le=100)
    redis_url: str = DEFAULT_REDIS_URL
    auth_port: int = Field(default=8001, ge=0, le=65535)
    auth_auto_migrate: bool = True

    # 10 s at least: short lifetimes let tests watch expiry and in-band refresh happen
    jwt_access_ttl_s: int = Field(default=ACCESS_TOKEN_MAX_TTL_S, ge=10, le=ACCESS_TOKEN_MAX_TTL_S)
    jwt_refresh_ttl_s: int = Field(default=14 * 86_400, ge=300, le=90 * 86_400)
    jwt_issuer: str = ISSUER
    jwt_audience: str = AUDIENCE
    jwt_leeway_s: int = Field(default=5, ge=0, le=60)

    auth_key_passphrase: SecretStr | None = None
    auth_key_cache_s: float = Field(default=30.0, ge=0.0, le=600.0)
    auth_invite_ttl_s: int = Field(default=7 * 86_400, ge=60, le=30 * 86_400)

    auth_argon2_time_cost: int = Field(default=3, ge=1, le=20)
    auth_argon2_memory_kib: int = Field(default=64 * 1024, ge=8, le=4 * 1024 * 1024)
    auth_argon2_parallelism: int = Field(default=4, ge=1, le=64)
    auth_hash_slots: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description="Argon2 checks at once; unset: sized to APEX_AUTH_MEMORY_LIMIT_BYTES, else the CPUs",
    )
    auth_memory_limit_bytes: int | None = Field(
        default=None,
        ge=0,
        description="the container's memory limit (Kubernetes: resourceFieldRef limits.memory)",
    )
    auth_hash_wait_s: float = Field(
        default=2.0, gt=0, le=30, description="how long a login waits for a hashing slot before auth_busy"
    )

    auth_login_account_limit: int = Field(default=5, ge=1)
    auth_login_account_window_s: int = Field(default=15 * 60, ge=1)
    auth_login_address_limit: int = Field(default=30, ge=1)
    auth_login_address_window_s: int = Field(default=5 * 60, ge=1)
    auth_register_address_limit: int = Field(default=10, ge=1)
    auth_register_address_window_s: int = Field(default=60 * 60, ge=1)
    auth_forwarded_hops: int = Field(
        default=0, ge=0, le=5, description="fixed proxies in front of auth; APEX_TRUSTED_PROXIES wins"
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="networks of the proxies in front of auth (load balancer, ingress, gateway pods)"
        ' as JSON CIDRs ["10.0.0.0/8"]: X-Forwarded-For is followed past them to the client',
    )
    auth_ops_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="serve /healthz, /readyz and /metrics on this port only; unset: on the auth port",
    )

    auth_audit_batch: int = Field(default=100, ge=1, le=1000)
    auth_audit_poll_s: float = Field(default=1.0, gt=0.0, le=60.0)

    # The platform's operators, by user id (usr_…): their tokens carry the ``operator``
    # role. User ids, not emails: registration does not prove an email, so an email list
    # would make the role claimable by whoever registers that address first.
    operator_users: list[UserId] = []

    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_jwks_url: str | None = None
    oidc_tenant_claim: str = "tid"

    @property
    def hash_slots(self) -> int:
        """Argon2 checks at once: configured, or what the memory limit holds, or the CPUs."""
        if self.auth_hash_slots is not None:
            return self.auth_hash_slots
        if self.auth_memory_limit_bytes:
            return slots_for_memory(self.auth_memory_limit_bytes, self.auth_argon2_memory_kib)
        return max(1, os.cpu_count() or 1)

    @property
    def revocation_ttl_s(self) -> int:
        """How long a revoked session id stays in Redis: longer than any access token of
        it can live, whatever TTL it was minted with, plus the verifiers' leeway."""
        return int(ACCESS_TOKEN_MAX_TTL_S) + 60

    @property
    def key_retire_after_s(self) -> int:
        """How long a replaced signing key stays published: the last token it signed may
        have been minted up to ``auth_key_cache_s`` after the rotation, by a replica that
        had not reloaded its keys yet."""
        return self.jwt_access_ttl_s + int(self.auth_key_cache_s) + self.jwt_leeway_s + 60

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        trusted_networks(value)  # raises on a typo, naming it
        return value

    @model_validator(mode="after")
    def _oidc_is_all_or_nothing(self) -> AuthSettings:
        parts = (self.oidc_issuer, self.oidc_audience, self.oidc_jwks_url)
        if any(parts) and not all(parts):
            raise ValueError("APEX_OIDC_ISSUER, APEX_OIDC_AUDIENCE and APEX_OIDC_JWKS_URL go together")
        return self

    @model_validator(mode="after")
    def _production_refuses_insecure_defaults(self) -> AuthSettings:
        if self.env != "production":
            return self
        problems = []
        if self.postgres_dsn == DEFAULT_POSTGRES_DSN or "127.0.0.1" in self.postgres_dsn:
            problems.append("APEX_POSTGRES_DSN must point at the production database")
        if self.redis_url == DEFAULT_REDIS_URL or "127.0.0.1" in self.redis_url:
            problems.append("APEX_REDIS_URL must point at the production Redis")
        if self.auth_key_passphrase is None or len(self.auth_key_passphrase) < 16:
            problems.append("APEX_AUTH_KEY_PASSPHRASE (16+ chars) must encrypt the signing keys")
        if (
            self.auth_argon2_memory_kib < ARGON2_MIN_MEMORY_KIB
            or self.auth_argon2_time_cost < ARGON2_MIN_TIME_COST
        ):
            problems.append("Argon2 parameters are below the OWASP minimum (19 MiB, t=2)")
        if self.oidc_jwks_url and not self.oidc_jwks_url.startswith("https://"):
            problems.append("APEX_OIDC_JWKS_URL must use https")
        if problems:
            raise ValueError("; ".join(problems))
        return self
