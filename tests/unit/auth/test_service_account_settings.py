"""Service accounts need the bus issuer: production refuses to start when they are on
(APEX_SERVICE_ACCOUNTS=true) without its files; unset, they are on only when configured;
without an issuer a create answers 503 service_unavailable before touching anything."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from apex_auth import AuthSettings
from apex_auth.model import Client, Principal
from apex_auth.serviceaccounts.store import ServiceAccounts
from apex_contracts import ErrorCode, Unavailable
from tests.unit.auth.test_auth_settings import PRODUCTION


def test_production_refuses_service_accounts_without_the_issuer(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="APEX_NATS_ISSUER_FILE, APEX_NATS_SYSTEM_CREDS"):
        AuthSettings(**PRODUCTION, service_accounts=True)
    issuer, creds = tmp_path / "issuer.json", tmp_path / "system.creds"
    issuer.write_text("{}")
    with pytest.raises(ValidationError, match="APEX_NATS_SYSTEM_CREDS"):
        AuthSettings(**PRODUCTION, service_accounts=True, nats_issuer_file=issuer, nats_system_creds=creds)
    creds.write_text("creds")
    settings = AuthSettings(
        **PRODUCTION, service_accounts=True, nats_issuer_file=issuer, nats_system_creds=creds
    )
    assert settings.issues_service_accounts


def test_unset_means_on_when_configured(tmp_path: Path) -> None:
    assert not AuthSettings(_env_file=None).issues_service_accounts
    both = {"nats_issuer_file": tmp_path / "i.json", "nats_system_creds": tmp_path / "s.creds"}
    assert AuthSettings(_env_file=None, **both).issues_service_accounts
    assert not AuthSettings(_env_file=None, service_accounts=False, **both).issues_service_accounts


async def test_without_an_issuer_a_create_is_service_unavailable() -> None:
    accounts = ServiceAccounts(
        None, None, nats_url="nats://x:4222", public_url="nats://x:4222", system_creds=None
    )  # type: ignore[arg-type]
    admin = Principal(user_id="usr_x", tenant_id="ten_x", session_id="ses_x", roles=("admin",))
    with pytest.raises(Unavailable) as raised:
        await accounts.create(admin, "nightly", Client(ip=None, user_agent=None))
    assert raised.value.code == ErrorCode.SERVICE_UNAVAILABLE
