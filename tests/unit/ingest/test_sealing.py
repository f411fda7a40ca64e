"""Admin keys are sealed with the configured key, open only for their own tenant and
provider, still open after a key rotation that kept the old key, and never with another
key; the settings refuse to run without a key outside development."""

from __future__ import annotations

import base64
import os

import pytest
from pydantic import ValidationError

from apex_contracts import ApexError
from apex_ingest.connectors.sealing import Sealer
from apex_ingest.settings import IngestSettings


def key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def test_a_sealed_key_opens_only_in_its_own_context() -> None:
    current = key()
    sealer = Sealer(current)
    sealed = sealer.seal("sk-admin-secret", "ten_A.openai")
    assert "sk-admin-secret" not in sealed and sealed.startswith("v1.")
    assert sealer.open(sealed, "ten_A.openai") == "sk-admin-secret"
    with pytest.raises(ApexError):
        sealer.open(sealed, "ten_B.openai")
    with pytest.raises(ApexError):
        Sealer(key()).open(sealed, "ten_A.openai")
    rotated = Sealer(key(), [current])
    assert rotated.open(sealed, "ten_A.openai") == "sk-admin-secret"
    assert rotated.seal("x", "c").split(".")[1] != sealed.split(".")[1], "new seals use the new key"


def test_the_settings_refuse_a_missing_or_malformed_key_outside_development(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("APEX_CONNECTOR_KEY", raising=False)
    assert IngestSettings(env="development").connector_key is None  # the development key then
    with pytest.raises(ValidationError, match="APEX_CONNECTOR_KEY"):
        IngestSettings(env="test")
    with pytest.raises(ValidationError, match="32 bytes"):
        IngestSettings(env="test", connector_key=base64.b64encode(b"short").decode())
    assert IngestSettings(env="test", connector_key=key()).connector_key is not None
