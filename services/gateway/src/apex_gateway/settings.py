from __future__ import annotations

from pydantic import Field, model_validator

from apex_contracts import auth
from apex_runtime import ServiceSettings


class GatewaySettings(ServiceSettings):
    gateway_port: int = 8000
    gateway_ops_port: int | None = Field(
        default=None,
        description="serve /healthz, /readyz and /metrics on this port only (not routed by the"
        " ingress); unset: on the gateway's own port",
    )
    gateway_drain_s: float = Field(
        default=10.0,
        ge=0,
        le=300,
        description="on SIGTERM, open sockets and SSE streams are ended evenly over this window",
    )
    auth_url: str = "http://127.0.0.1:8001"
    redis_url: str = "redis://127.0.0.1:6379/0"
    jwt_issuer: str = auth.ISSUER
    jwt_audience: str = auth.AUDIENCE
    jwks_min_refresh_s: float = Field(default=10.0, ge=0)
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_jwks_url: str | None = None
    oidc_tenant_claim: str = "tid"
    oidc_algorithms: list[str] = ["RS256", "ES256", "EdDSA"]
    allowed_origins: list[str] = ["http://127.0.0.1:8000", "http://localhost:8000"]
    ws_max_frame_bytes: int = 64 * 1024
    ws_send_queue: int = Field(default=1024, ge=16, description="frames buffered per connection")
    ws_heartbeat_ms: int = 20_000
    ws_rate_per_s: float = 20.0
    ws_rate_burst: int = 60
    ws_user_rate_per_s: float = 50.0
    ws_user_rate_burst: int = 200
    ws_max_connections_per_user: int = 20
    # How long a replay waits for room in a full send queue before the connection ends
    # (4408 slow_consumer), and how long a server-side close waits for the client to
    # read what is before the close frame (a client that reads nothing never gets it).
    ws_send_timeout_ms: int = Field(default=15_000, ge=100)
    ws_close_wait_ms: int = Field(default=30_000, ge=100)
    # How often open sockets re-check their sessions against the revocation set (Redis):
    # the most a sign-out whose broadcast this gateway missed can take to close them.
    ws_revocation_check_s: float = Field(default=5.0, gt=0, le=60)
    # A connection's slot in the per-user cap (Redis) lives this long unless renewed by
    # its gateway (every third of it): a killed gateway's slots free themselves.
    ws_connection_lease_s: float = Field(default=30.0, ge=3)
    # The longest a long-poll (GET .../events?wait_ms=) waits for the next event.
    http_long_poll_max_ms: int = Field(default=30_000, ge=0, le=120_000)
    # A claim of an external OIDC issuer's token that makes its bearer a platform
    # operator when it equals (or, for a list, contains) ``oidc_operator_value``.
    oidc_operator_claim: str | None = None
    oidc_operator_value: str = "apex-operator"
    ack_timeout_ms: int = 10_000
    ingest_url: str = "http://127.0.0.1:8006"

    @model_validator(mode="after")
    def _oidc_complete(self) -> GatewaySettings:
        parts = (self.oidc_issuer, self.oidc_audience, self.oidc_jwks_url)
        if any(parts) and not all(parts):
            raise ValueError("APEX_OIDC_ISSUER, APEX_OIDC_AUDIENCE and APEX_OIDC_JWKS_URL go together")
        return self

    @model_validator(mode="after")
    def _asymmetric_only(self) -> GatewaySettings:
        allowed = {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
        refused = [a for a in self.oidc_algorithms if a not in allowed]
        if refused:
            raise ValueError(f"APEX_OIDC_ALGORITHMS may only name asymmetric algorithms, not {refused}")
        if self.oidc_issuer is not None and self.oidc_issuer == self.jwt_issuer:
            raise ValueError("APEX_OIDC_ISSUER must differ from the built-in issuer")
        return self

    @property
    def jwks_url(self) -> str:
        return self.auth_url.rstrip("/") + auth.JWKS_PATH
