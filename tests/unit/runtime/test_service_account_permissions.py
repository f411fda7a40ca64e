"""A service account's user JWT carries exactly the bus API grants of its (tenant, user):
no wildcard tenant or user, no JetStream API beyond the filtered consumer create, no
command, its own inbox prefix only, our projectors' consumer names denied."""

from __future__ import annotations

from apex_contracts import new_id
from apex_contracts.busapi import api_subject, inbox_prefix, parse_api_subject
from apex_runtime import natsjwt
from apex_runtime.buspermissions import service_account_permissions, service_permissions
from apex_runtime.natsissuer import AccountIssuer
from apex_runtime.natsjwt import Nkey


def test_the_grants_name_the_tenant_and_user_and_nothing_wider() -> None:
    tenant, user = new_id("ten"), new_id("usr")
    allowed = service_account_permissions(tenant, user)
    assert allowed.publish == (
        f"apex.api.{tenant}.{user}.>",
        f"$JS.API.CONSUMER.CREATE.APEX_EVT.*.apex.evt.{tenant}.{user}.>",
        "$JS.FC.APEX_EVT.>",
    )
    assert allowed.subscribe == (f"_INBOX.{user}.>", f"apex.evt.{tenant}.{user}.>")
    assert {d.split(".")[5] for d in allowed.deny_publish} == {
        "persistence-postgres",
        "persistence-redis",
        "persistence-clickhouse",
    }
    assert not allowed.respond


def test_the_issued_jwt_carries_them() -> None:
    issuer = AccountIssuer(Nkey.new("operator"), Nkey.new("account").public, Nkey.new("account"))
    tenant, user = new_id("ten"), new_id("usr")
    issued = issuer.issue("x", service_account_permissions(tenant, user))
    token = issued.creds.split("-----BEGIN NATS USER JWT-----\n")[1].split("\n")[0]
    claims = natsjwt.decode_claims(token)
    assert claims["sub"] == issued.public_key and claims["iss"] == issuer.signer.public
    assert claims["nats"]["issuer_account"] == issuer.account_public
    assert claims["nats"]["pub"]["allow"][0] == f"apex.api.{tenant}.{user}.>"
    assert len(claims["nats"]["pub"]["deny"]) == 3
    assert claims["nats"]["sub"]["allow"] == [f"_INBOX.{user}.>", f"apex.evt.{tenant}.{user}.>"]
    revoked = natsjwt.decode_claims(issuer.account_jwt({issued.public_key: 5}))
    assert revoked["nats"]["revocations"] == {issued.public_key: 5}
    assert revoked["nats"]["signing_keys"] == [issuer.signer.public]


def test_the_responders_may_hear_and_answer_the_bus_api() -> None:
    gateway, ingest = service_permissions("gateway"), service_permissions("ingest")
    assert {"apex.api.*.*.message.send", "apex.api.*.*.run.cancel"} <= set(gateway.subscribe)
    assert "apex.api.*.*.usage.ingest" in ingest.subscribe
    assert gateway.respond and ingest.respond


def test_api_subjects_round_trip() -> None:
    tenant, user = new_id("ten"), new_id("usr")
    assert parse_api_subject(api_subject(tenant, user, "usage.ingest")) == (tenant, user, "usage.ingest")
    assert inbox_prefix(user) == f"_INBOX.{user}"
