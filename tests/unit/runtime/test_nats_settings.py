"""How a service connects to NATS from its settings: its own credentials, the CA that
verifies the server, and no anonymous connection in production."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from apex_cli.natstls import ensure_dev_tls
from apex_runtime import NatsCredentialsRequired, ServiceHost, ServiceSettings

PRODUCTION = {"env": "production", "nats_url": "tls://nats-0.nats-headless:4222"}


def test_production_refuses_to_connect_without_credentials() -> None:
    settings = ServiceSettings(**PRODUCTION)  # type: ignore[arg-type]
    with pytest.raises(NatsCredentialsRequired, match="APEX_NATS_CREDS is not set"):
        settings.nats_options()


def test_a_production_service_refuses_to_start_without_credentials() -> None:
    """Every service's composition root builds a ServiceHost first: it stops there."""
    with pytest.raises(NatsCredentialsRequired):
        ServiceHost("tools", ServiceSettings(**PRODUCTION), 0)  # type: ignore[arg-type]


def test_development_may_connect_without_credentials() -> None:
    assert ServiceSettings(env="development").nats_options() == {}


def test_credentials_and_the_ca_reach_the_connect_call(tmp_path: Path) -> None:
    tls = ensure_dev_tls(tmp_path)
    creds = tmp_path / "tools.creds"
    settings = ServiceSettings(**PRODUCTION, nats_creds=creds, nats_ca=tls.ca)  # type: ignore[arg-type]
    options = settings.nats_options()
    assert options["user_credentials"] == str(creds)
    context = options["tls"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname is True
    assert len(context.get_ca_certs()) == 1, "the configured CA, not the system's roots"
    ServiceHost("tools", settings, 0)  # FastStream takes them as its security


def test_an_unreadable_ca_names_the_setting(tmp_path: Path) -> None:
    settings = ServiceSettings(nats_ca=tmp_path / "missing.crt")
    with pytest.raises(ValueError, match="APEX_NATS_CA"):
        settings.nats_options()
