"""Issuing and revoking NATS users of the ``APEX`` account at run time (tenants' service
accounts).

The issuer holds what that takes, and no more: the account's signing key (it signs user
JWTs), the operator key (it signs the account JWT, whose ``revocations`` list is how NATS
revokes a user) and the account's public key. ``apex up`` writes them to
``.apex/nats-auth/issuer.json`` (0600); a deployment mounts the same file from a secret.
A revocation reaches the servers as an updated account JWT published on
``$SYS.REQ.CLAIMS.UPDATE`` by a user of the system account: the full resolver stores it
(and passes it to the cluster's other servers) and closes the revoked user's connections."""

from __future__ import annotations

import json
import logging
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import nats.errors
import orjson

from apex_contracts import ErrorCode, Unavailable
from apex_runtime import natsjwt
from apex_runtime.buspermissions import BusPermissions
from apex_runtime.natsjwt import Nkey

log = logging.getLogger(__name__)

ACCOUNT_NAME = "APEX"
CLAIMS_UPDATE = "$SYS.REQ.CLAIMS.UPDATE"


@dataclass(frozen=True)
class Issued:
    """A new user: its public key (what a revocation names) and its ``.creds`` text."""

    public_key: str
    creds: str


@dataclass(frozen=True)
class AccountIssuer:
    operator: Nkey
    account_public: str
    signer: Nkey

    @classmethod
    def load(cls, path: Path) -> AccountIssuer:
        """From the issuer file (``{"operator", "account_public", "signer"}``, seeds and a
        public key); raises OSError or ValueError naming the file when it is not usable."""
        try:
            raw = json.loads(path.read_text())
            return cls(Nkey(raw["operator"]), str(raw["account_public"]), Nkey(raw["signer"]))
        except (KeyError, TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path} is not a NATS issuer file: {exc!r}") from exc

    def to_json(self) -> str:
        return json.dumps(
            {
                "operator": self.operator.seed,
                "account_public": self.account_public,
                "signer": self.signer.seed,
            },
            indent=2,
        )

    def account_jwt(self, revocations: Mapping[str, int] | None = None) -> str:
        """The ``APEX`` account: JetStream on, users signed by the signing key only, and
        every user JWT of a revoked key issued at or before its time refused."""
        return natsjwt.account_jwt(
            self.operator,
            self.account_public,
            ACCOUNT_NAME,
            jetstream=True,
            signing_keys=[self.signer.public],
            revocations=revocations,
        )

    def issue(self, name: str, allowed: BusPermissions) -> Issued:
        user = Nkey.new("user")
        token = natsjwt.user_jwt(
            self.signer,
            user.public,
            name,
            account=self.account_public,
            publish=allowed.publish,
            subscribe=allowed.subscribe,
            deny_publish=allowed.deny_publish,
            respond=allowed.respond,
        )
        return Issued(user.public, natsjwt.creds(token, user))


async def push_account(
    url: str,
    system_creds: Path,
    account_jwt: str,
    *,
    tls: ssl.SSLContext | None = None,
    timeout_s: float = 5.0,
) -> None:
    """Hands ``account_jwt`` to the servers through the system account (``tls``: the
    context that verifies them, ``ServiceSettings.nats_tls()``); Unavailable
    (``bus_unavailable``) when no server answers or one refuses it."""
    servers = [part.strip() for part in url.split(",") if part.strip()]
    options: dict[str, Any] = {"tls": tls} if tls is not None else {}
    try:
        nc = await nats.connect(
            servers,
            user_credentials=str(system_creds),
            name="apex-account-issuer",
            connect_timeout=3,
            allow_reconnect=False,
            **options,
        )
    except (OSError, nats.errors.Error) as exc:
        raise Unavailable(
            f"cannot reach NATS to update the account: {exc!r}", code=ErrorCode.BUS_UNAVAILABLE
        ) from exc
    try:
        reply = await nc.request(CLAIMS_UPDATE, account_jwt.encode(), timeout=timeout_s)
    except (TimeoutError, nats.errors.Error) as exc:
        raise Unavailable(
            f"NATS did not take the account update: {exc!r}", code=ErrorCode.BUS_UNAVAILABLE
        ) from exc
    finally:
        await nc.close()
    answer = orjson.loads(reply.data)
    error = answer.get("error")
    if error:
        raise Unavailable(f"NATS refused the account update: {error}", code=ErrorCode.BUS_UNAVAILABLE)
    log.info("account JWT updated on the bus: %s", answer.get("data", {}).get("message", "ok"))
