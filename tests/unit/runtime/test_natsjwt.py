"""NATS JWTs as the server reads them: signed by the issuer's nkey over
``header.payload``, claims naming issuer and subject, and the standard .creds layout."""

from __future__ import annotations

import base64

import nkeys
import pytest

from apex_runtime import natsjwt
from apex_runtime.buspermissions import SERVICES, service_permissions
from apex_runtime.natsjwt import Nkey


def _verify(token: str, issuer: Nkey) -> None:
    signed, _, signature = token.rpartition(".")
    raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    assert nkeys.from_seed(bytearray(issuer.seed.encode())).verify(signed.encode(), raw)


def test_a_user_jwt_is_signed_by_the_account_signing_key_and_names_its_account() -> None:
    account, signer, user = Nkey.new("account"), Nkey.new("account"), Nkey.new("user")
    token = natsjwt.user_jwt(
        signer, user.public, "tools", account=account.public, publish=["apex.evt.>"], subscribe=["_INBOX.>"]
    )
    _verify(token, signer)
    claims = natsjwt.decode_claims(token)
    assert claims["iss"] == signer.public and claims["sub"] == user.public and claims["jti"]
    assert claims["nats"]["issuer_account"] == account.public
    assert claims["nats"]["type"] == "user" and claims["nats"]["version"] == 2
    assert claims["nats"]["pub"] == {"allow": ["apex.evt.>"]}
    assert "resp" not in claims["nats"]


def test_an_account_lists_its_signing_keys_revocations_and_jetstream() -> None:
    operator, account, signer = Nkey.new("operator"), Nkey.new("account"), Nkey.new("account")
    token = natsjwt.account_jwt(
        operator, account.public, "APEX", jetstream=True, signing_keys=[signer.public], revocations={"UX": 5}
    )
    _verify(token, operator)
    body = natsjwt.decode_claims(token)["nats"]
    assert body["signing_keys"] == [signer.public] and body["revocations"] == {"UX": 5}
    assert body["limits"]["disk_storage"] == -1
    system = natsjwt.decode_claims(natsjwt.account_jwt(operator, account.public, "SYS", jetstream=False))
    assert "disk_storage" not in system["nats"]["limits"]


def test_keys_have_their_roles_and_never_show_their_seed() -> None:
    assert Nkey.new("operator").public.startswith("O")
    assert Nkey.new("account").public.startswith("A")
    user = Nkey.new("user")
    assert user.public.startswith("U") and user.seed.startswith("SU")
    assert user.seed not in repr(user)


def test_a_creds_file_holds_the_jwt_and_the_seed_in_the_standard_blocks() -> None:
    user = Nkey.new("user")
    text = natsjwt.creds("a.b.c", user)
    assert "-----BEGIN NATS USER JWT-----\na.b.c\n------END NATS USER JWT------" in text
    assert f"-----BEGIN USER NKEY SEED-----\n{user.seed}\n------END USER NKEY SEED------" in text


@pytest.mark.parametrize("service", SERVICES)
def test_no_service_may_delete_a_stream_or_send_every_command(service: str) -> None:
    allowed = service_permissions(service)
    assert not any(s.startswith("$JS.API.STREAM.DELETE.") for s in allowed.publish)
    assert "apex.cmd.>" not in allowed.publish and ">" not in allowed.publish
    assert "_INBOX.>" not in allowed.publish  # replies only to requests received (resp)


def test_an_unknown_service_has_no_permissions() -> None:
    with pytest.raises(ValueError, match="no bus permissions"):
        service_permissions("billing")


def test_persistence_follows_what_it_projects_and_may_delete_the_retired_durables() -> None:
    """The projectors create ordered consumers of APEX_EVT and APEX_AUDIT and answer their
    flow control; nothing is acked. Persistence deletes the durables they used to pull."""
    allowed = service_permissions("persistence").publish
    for stream in ("APEX_EVT", "APEX_AUDIT"):
        assert f"$JS.API.CONSUMER.CREATE.{stream}.>" in allowed
        assert f"$JS.API.CONSUMER.DELETE.{stream}.*" in allowed
    assert "$JS.FC.>" in allowed
    assert not any(s.startswith("$JS.ACK.APEX_EVT.") for s in allowed)


@pytest.mark.parametrize("service", ["auth", "orchestrator", "agents", "tools", "ingest"])
def test_only_the_erasure_paths_may_purge(service: str) -> None:
    assert not any(".PURGE." in s or ".MSG.DELETE." in s for s in service_permissions(service).publish)
