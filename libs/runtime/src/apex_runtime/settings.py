"""Settings every service shares; each service subclasses ``ServiceSettings``.

Values come from ``APEX_*`` environment variables with working local defaults. Outside
development, insecure defaults are refused at start-up rather than silently used.
"""

from __future__ import annotations

import os
import socket
import ssl
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from apex_contracts.streams import STREAMS
from apex_runtime.secrets import is_placeholder, placeholder_in_url


def default_instance() -> str:
    host = socket.gethostname().split(".")[0].replace("_", "-")[:40] or "host"
    return f"{host}-{os.getpid()}"


def _placeholder_secret(name: str, value: object) -> bool:
    """A secret setting holding a placeholder. An empty secret counts as unset (an
    optional key): whether the service can do without it is its own settings' call."""
    if isinstance(value, SecretStr):
        secret = value.get_secret_value()
        return bool(secret) and is_placeholder(secret)
    return isinstance(value, str) and name.endswith(("_url", "_dsn")) and placeholder_in_url(value)


class NatsCredentialsRequired(ValueError):
    """``APEX_ENV=production`` without ``APEX_NATS_CREDS``: a production service never
    connects to the bus anonymously, so it refuses to start (docs/deploy.md, NATS
    authentication)."""


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="APEX_", extra="ignore", frozen=True)

    env: Literal["development", "test", "production"] = "development"
    nats_url: str = "nats://127.0.0.1:4222"
    nats_replicas: int = Field(default=1, ge=1, le=5)
    nats_creds: Path | None = Field(
        default=None,
        description="this service's NATS credentials file (.creds: its user JWT and nkey seed); unset:"
        " connect without credentials (a server without authentication, e.g. the tests' own);"
        " required in production",
    )
    nats_ca: Path | None = Field(
        default=None,
        description="CA certificate (PEM) the NATS servers' certificates are signed by: the client"
        " verifies the server with it over TLS (tls:// URLs); unset: the system's roots",
    )
    instance_id: str = Field(default_factory=default_instance, pattern=r"^[A-Za-z0-9_\-]{1,64}$")
    http_host: str = "127.0.0.1"
    log_level: str = "INFO"
    log_format: Literal["json", "text"] = "json"
    otlp_endpoint: str | None = Field(
        default=None,
        description="OTLP/HTTP base URL of a trace collector (http://collector:4318); unset: no export",
    )
    nats_stream_max_bytes: dict[str, int] = Field(
        default_factory=dict,
        description='size cap per stream, JSON ({"APEX_EVT": 32212254720}); their sum must fit the'
        " JetStream file store (max_file_store) with room to spare",
    )

    def nats_options(self) -> dict[str, Any]:
        """What nats-py's connect needs to authenticate as this service
        (``user_credentials``) and to verify the server (``tls``, when ``APEX_NATS_CA`` is
        set). Raises ``NatsCredentialsRequired`` in production without credentials: every
        bus connection a service makes is built here, so none is ever anonymous there."""
        if self.env == "production" and self.nats_creds is None:
            raise NatsCredentialsRequired(
                "APEX_NATS_CREDS is not set: in production (APEX_ENV=production) a service connects"
                " to NATS only as its own user; give it its .creds file (docs/deploy.md, NATS"
                " authentication)"
            )
        options: dict[str, Any] = {}
        if self.nats_creds is not None:
            options["user_credentials"] = str(self.nats_creds)
        tls = self.nats_tls()
        if tls is not None:
            options["tls"] = tls
        return options

    def nats_tls(self) -> ssl.SSLContext | None:
        """A client context that verifies the server's certificate and host name against
        ``APEX_NATS_CA``; None when unset (nats-py then uses the system's roots for a
        server that requires TLS)."""
        if self.nats_ca is None:
            return None
        try:
            return ssl.create_default_context(cafile=str(self.nats_ca))
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"APEX_NATS_CA={self.nats_ca}: not a readable PEM certificate ({exc})") from exc

    @field_validator("nats_stream_max_bytes")
    @classmethod
    def _known_streams(cls, value: dict[str, int]) -> dict[str, int]:
        known = {spec.name for spec in STREAMS}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(
                f"APEX_NATS_STREAM_MAX_BYTES names unknown streams {unknown}; known: {sorted(known)}"
            )
        if any(size <= 0 for size in value.values()):
            raise ValueError("APEX_NATS_STREAM_MAX_BYTES sizes must be positive byte counts")
        return value

    @model_validator(mode="after")
    def _production_needs_real_urls(self) -> ServiceSettings:
        if self.env == "production" and "127.0.0.1" in self.nats_url:
            raise ValueError("APEX_NATS_URL must point at the NATS cluster in production")
        return self

    @model_validator(mode="after")
    def _production_refuses_placeholder_secrets(self) -> ServiceSettings:
        """In production every secret this service reads (a ``SecretStr`` setting, the
        password inside a ``*_url`` or ``*_dsn``) must be a real one: a template's
        CHANGE-ME or a shipped default stops the process at start, naming the variable."""
        if self.env != "production":
            return self
        prefix = str(self.model_config.get("env_prefix", ""))
        refused = []
        for name in type(self).model_fields:
            if _placeholder_secret(name, getattr(self, name)):
                refused.append(f"{prefix}{name}".upper())
        if refused:
            raise ValueError(
                f"{', '.join(refused)}: a placeholder or default secret; set the real value from your"
                " secret store (docs/deploy.md, Secrets)"
            )
        return self
