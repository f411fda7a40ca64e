"""Settings an operator writes: libpq TLS DSNs, placeholders, stream caps."""

from __future__ import annotations

import ssl

import pytest

from apex_runtime import ServiceSettings
from apex_runtime.pgtls import split_tls
from apex_runtime.secrets import is_placeholder, placeholder_in_url


def test_verify_full_checks_the_certificate_and_the_host() -> None:
    url, tls = split_tls(
        "postgresql+asyncpg://apex:pw@db.internal:5432/apex?sslmode=verify-full&application_name=x"
    )
    assert url == "postgresql+asyncpg://apex:pw@db.internal:5432/apex?application_name=x"
    assert isinstance(tls, ssl.SSLContext)
    assert tls.check_hostname is True and tls.verify_mode == ssl.CERT_REQUIRED
    _, ca_only = split_tls("postgresql://a@h/d?sslmode=verify-ca")
    assert isinstance(ca_only, ssl.SSLContext) and ca_only.check_hostname is False
    assert split_tls("postgresql://a@h/d?sslmode=require")[1] == "require"
    assert split_tls("postgresql://a@h/d?sslmode=disable")[1] is False
    assert split_tls("postgresql://a@h/d")[1] is None
    with pytest.raises(ValueError, match="sslmode"):
        split_tls("postgresql://a@h/d?sslmode=sometimes")


@pytest.mark.parametrize(
    "value",
    [
        "CHANGE-ME",
        "change-me-in-production",
        "apex-local-only",
        "",
        "postgres",
        "CHANGE-ME-to-a-long-random-passphrase",
    ],
)
def test_placeholders_are_recognised(value: str) -> None:
    assert is_placeholder(value)


def test_real_secrets_pass() -> None:
    assert not is_placeholder("mT4v9Qz2Lk7Wc5Xp8Rb3Nd6J")
    assert placeholder_in_url("postgresql://apex:CHANGE-ME@postgres.example.internal:5432/apex")
    assert not placeholder_in_url("postgresql://apex:q7Vd2LmZ9pXw4@postgres.example.internal:5432/apex")
    assert not placeholder_in_url("redis://redis:6379/0"), "no password: not judged here"


def test_stream_caps_name_real_streams(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APEX_NATS_STREAM_MAX_BYTES", '{"APEX_EVT": 1024}')
    assert ServiceSettings().nats_stream_max_bytes == {"APEX_EVT": 1024}
    monkeypatch.setenv("APEX_NATS_STREAM_MAX_BYTES", '{"APEX_EVENTS": 1024}')
    with pytest.raises(ValueError, match="unknown streams"):
        ServiceSettings()
