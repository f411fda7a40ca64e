"""NATS decentralised credentials: nkeys and the JWTs the server verifies.

NATS in operator mode trusts one operator key; the operator signs account JWTs, an
account (or one of its signing keys) signs user JWTs, and a client proves it holds the
user's nkey by signing the server's nonce. This module encodes those JWTs as NATS'
``jwt`` v2 format documents them (header ``{"typ": "JWT", "alg": "ed25519-nkey"}``,
base64url without padding, the ed25519 signature of ``header.payload`` by the issuer's
nkey, ``jti`` a base32 SHA-512/256 of the standard claims) and writes the standard
``.creds`` file (user JWT and seed) that nats-py, nats.js and the nats CLI read.

The same functions serve ``apex up`` (the operator, the accounts and one user per
service, at first start) and, later, a service that issues tenants' users at run time
and revokes them (an account JWT with ``revocations``, pushed through the system
account)."""

from __future__ import annotations

import base64
import hashlib
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import nkeys
import orjson

_HEADER = {"typ": "JWT", "alg": "ed25519-nkey"}
_PREFIX = {
    "operator": nkeys.PREFIX_BYTE_OPERATOR,
    "account": nkeys.PREFIX_BYTE_ACCOUNT,
    "user": nkeys.PREFIX_BYTE_USER,
}
UNLIMITED = -1


@dataclass(frozen=True)
class Nkey:
    """An nkey pair held as its seed (``S…``); ``public`` is the id NATS names it by
    (``O…`` operator, ``A…`` account, ``U…`` user)."""

    seed: str = field(repr=False)  # a secret: never in a log line or a test report

    @classmethod
    def new(cls, kind: str) -> Nkey:
        seed = nkeys.encode_seed(os.urandom(32), _PREFIX[kind])
        return cls(seed.decode())

    @property
    def public(self) -> str:
        return str(self._pair().public_key.decode())

    def sign(self, data: bytes) -> bytes:
        return bytes(self._pair().sign(data))

    def _pair(self) -> nkeys.KeyPair:
        return nkeys.from_seed(bytearray(self.seed.encode()))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def encode(issuer: Nkey, subject: str, name: str, nats: Mapping[str, Any], *, expires: int = 0) -> str:
    """A NATS JWT of ``subject`` (a public nkey) signed by ``issuer``; ``nats`` is the
    claim's body (its ``type`` and permissions or limits); ``version`` 2 is added."""
    standard: dict[str, Any] = {"iat": int(time.time()), "iss": issuer.public, "name": name, "sub": subject}
    if expires:
        standard["exp"] = expires
    digest = hashlib.new("sha512_256", orjson.dumps(standard, option=orjson.OPT_SORT_KEYS)).digest()
    claims = {
        **standard,
        "jti": base64.b32encode(digest).rstrip(b"=").decode(),
        "nats": {**nats, "version": 2},
    }
    signed = f"{_b64(orjson.dumps(_HEADER))}.{_b64(orjson.dumps(claims))}"
    return f"{signed}.{_b64(issuer.sign(signed.encode()))}"


def decode_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT, unverified (the NATS server is the one that verifies)."""
    payload = token.split(".")[1]
    return dict(orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def operator_jwt(operator: Nkey, name: str, *, system_account: str) -> str:
    return encode(operator, operator.public, name, {"type": "operator", "system_account": system_account})


def account_jwt(
    operator: Nkey,
    account: str,
    name: str,
    *,
    jetstream: bool,
    signing_keys: Sequence[str] = (),
    revocations: Mapping[str, int] | None = None,
) -> str:
    """An account signed by the operator. ``jetstream``: unlimited streams and storage
    (the deployment's ``max_file_store`` is the real bound); the system account has none.
    ``revocations`` maps a user's public key to a time: every user JWT of that key issued
    at or before it is refused, and its connections are closed when the server learns
    of the new account JWT."""
    limits: dict[str, Any] = {
        "subs": UNLIMITED,
        "data": UNLIMITED,
        "payload": UNLIMITED,
        "imports": UNLIMITED,
        "exports": UNLIMITED,
        "wildcards": True,
        "conn": UNLIMITED,
        "leaf": UNLIMITED,
    }
    if jetstream:
        limits.update(mem_storage=UNLIMITED, disk_storage=UNLIMITED, streams=UNLIMITED, consumer=UNLIMITED)
    body: dict[str, Any] = {
        "type": "account",
        "limits": limits,
        "default_permissions": {"pub": {}, "sub": {}},
    }
    if signing_keys:
        body["signing_keys"] = list(signing_keys)
    if revocations:
        body["revocations"] = dict(revocations)
    return encode(operator, account, name, body)


def user_jwt(
    signer: Nkey,
    user: str,
    name: str,
    *,
    account: str,
    publish: Sequence[str] | None = None,
    subscribe: Sequence[str] | None = None,
    deny_publish: Sequence[str] = (),
    respond: bool = False,
    expires: int = 0,
) -> str:
    """A user of ``account`` signed by ``signer`` (the account key or one of its signing
    keys). ``publish`` / ``subscribe``: the only subjects it may use; None: any (an
    administrator). ``deny_publish``: refused even where ``publish`` allows (a deny wins
    in NATS). ``respond``: it may also publish one reply to the reply subject of each
    request it receives, for two minutes (NATS' ``allow_responses``)."""
    pub: dict[str, list[str]] = {} if publish is None else {"allow": list(publish)}
    if deny_publish:
        pub["deny"] = list(deny_publish)
    body: dict[str, Any] = {
        "type": "user",
        "subs": UNLIMITED,
        "data": UNLIMITED,
        "payload": UNLIMITED,
        "pub": pub,
        "sub": {} if subscribe is None else {"allow": list(subscribe)},
    }
    if respond:
        body["resp"] = {"max": 1, "ttl": 0}
    if signer.public != account:
        body["issuer_account"] = account
    return encode(signer, user, name, body, expires=expires)


def creds(token: str, seed: Nkey) -> str:
    """The text of a standard NATS credentials file: the user JWT and the user's seed."""
    return (
        f"-----BEGIN NATS USER JWT-----\n{token}\n------END NATS USER JWT------\n\n"
        "************************* IMPORTANT *************************\n"
        "NKEY Seed printed below can be used to sign and prove identity.\n"
        "NKEYs are sensitive and should be treated as secrets.\n\n"
        f"-----BEGIN USER NKEY SEED-----\n{seed.seed}\n------END USER NKEY SEED------\n\n"
        "*************************************************************\n"
    )
