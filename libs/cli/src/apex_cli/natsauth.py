"""The credentials of the embedded NATS: an operator, the system account, the ``APEX``
account and one user per service, under ``.apex/nats-auth/`` (0700; every key and
``.creds`` file 0600).

The keys (operator, accounts, signing key, users) are made on the first ``apex up``
and kept (``keys.json``): the platform's identity and every ``.creds`` survive restarts. The JWTs are signed again at each start from the keys and
``apex_runtime.buspermissions``, so a service's user always carries the permissions of
the code that runs. Users are signed by the account's signing key, never the account key
itself, so the same key can later issue (and the account JWT revoke) tenants' users at
run time; ``system.creds`` is the system-account user that pushes an updated account JWT
to the servers (the full resolver keeps it), and ``issuer.json`` what the auth service
needs to issue and revoke tenants' service accounts (the signing key, the operator key
that re-signs the account JWT with its revocations, the account's public key)."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from apex_runtime import natsjwt
from apex_runtime.buspermissions import SERVICES, service_permissions
from apex_runtime.natsissuer import ACCOUNT_NAME, AccountIssuer
from apex_runtime.natsjwt import Nkey

ACCOUNT = ACCOUNT_NAME
ADMIN = "admin"
# What ``apex nats-auth init`` writes besides the keys and the .creds files (compose reads
# the folder as it is; docs/deploy.md maps each file to a key of the secret store for k8s)
SERVER_AUTH = "server-auth.conf"
ACCOUNT_ID = "apex-account.pub"
DEPLOYED_RESOLVER_DIR = Path("/data/jwt")


def _write_secret(path: Path, text: str) -> None:
    """Written 0600 from the first byte (never readable by others, even for a moment)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    path.chmod(0o600)


@dataclass(frozen=True)
class NatsAuth:
    """Operator-mode credentials in ``root``: ``ensure()`` makes or loads the keys and
    writes the JWTs and ``.creds`` files; ``server_config`` is the block to add to a NATS
    server's configuration."""

    root: Path
    operator: Nkey
    system: Nkey
    account: Nkey
    signer: Nkey

    @classmethod
    def ensure(cls, root: Path) -> NatsAuth:
        root.mkdir(parents=True, exist_ok=True)
        root.chmod(0o700)
        keys_file = root / "keys.json"
        if keys_file.exists():
            seeds = json.loads(keys_file.read_text())
        else:
            seeds = {
                "operator": Nkey.new("operator").seed,
                "system": Nkey.new("account").seed,
                "account": Nkey.new("account").seed,
                "signer": Nkey.new("account").seed,
            }
        users = seeds.setdefault("users", {})
        missing = [name for name in (*SERVICES, ADMIN, "system") if name not in users]
        for name in missing:
            users[name] = Nkey.new("user").seed
        if missing or not keys_file.exists():
            _write_secret(keys_file, json.dumps(seeds, indent=2) + "\n")
        auth = cls(root, *(Nkey(seeds[name]) for name in ("operator", "system", "account", "signer")))
        auth._write_users({name: Nkey(seed) for name, seed in users.items()})
        _write_secret(auth.issuer_path, auth.issuer.to_json() + "\n")
        return auth

    @property
    def issuer(self) -> AccountIssuer:
        return AccountIssuer(self.operator, self.account.public, self.signer)

    @property
    def issuer_path(self) -> Path:
        """What issues and revokes service accounts (the auth service's
        ``APEX_NATS_ISSUER_FILE``)."""
        return self.root / "issuer.json"

    def creds_path(self, user: str) -> Path:
        """``<service>``, ``admin`` (every subject of the APEX account: tests, operators'
        tools) or ``system`` (the system account)."""
        return self.root / f"{user}.creds"

    def account_jwt(self, revocations: dict[str, int] | None = None) -> str:
        return self.issuer.account_jwt(revocations)

    def server_config(self, resolver_dir: Path) -> str:
        """Operator mode with the full resolver: the server keeps account JWTs in
        ``resolver_dir`` and takes updates (a revocation) over the system account;
        the two accounts are preloaded so a fresh server needs nothing else."""
        operator = natsjwt.operator_jwt(self.operator, "apex", system_account=self.system.public)
        system = natsjwt.account_jwt(self.operator, self.system.public, "SYS", jetstream=False)
        # a CONNECT carries the user JWT: a service with long allow-lists needs more than
        # the default 4 KiB control line
        return f"""max_control_line: 64KB
operator: {operator}
system_account: {self.system.public}
resolver: {{
  type: full
  dir: "{resolver_dir}"
  allow_delete: false
  interval: "2m"
}}
resolver_preload: {{
  {self.system.public}: {system}
  {self.account.public}: {self.account_jwt()}
}}
"""

    def _write_users(self, users: dict[str, Nkey]) -> None:
        for service in SERVICES:
            allowed = service_permissions(service)
            self._write_user(
                service,
                users[service],
                publish=allowed.publish,
                subscribe=allowed.subscribe,
                respond=allowed.respond,
            )
        self._write_user(ADMIN, users[ADMIN])
        user = users["system"]
        token = natsjwt.user_jwt(self.system, user.public, "system", account=self.system.public)
        _write_secret(self.creds_path("system"), natsjwt.creds(token, user))

    def _write_user(
        self,
        name: str,
        user: Nkey,
        *,
        publish: tuple[str, ...] | None = None,
        subscribe: tuple[str, ...] | None = None,
        respond: bool = False,
    ) -> None:
        token = natsjwt.user_jwt(
            self.signer,
            user.public,
            name,
            account=self.account.public,
            publish=publish,
            subscribe=subscribe,
            respond=respond,
        )
        _write_secret(self.creds_path(name), natsjwt.creds(token, user))


def init_deployment(
    out: Path,
    *,
    tls_hosts: tuple[str, ...] | None = None,
    owner: tuple[int, int] | None = None,
    resolver_dir: Path = DEPLOYED_RESOLVER_DIR,
) -> list[Path]:
    """``apex nats-auth init``: what a NATS of docker compose or k8s/ and its clients need,
    in ``out``: the keys and every ``.creds`` (as ``apex up`` makes them, kept across
    runs), the server's operator and full-resolver block (``server-auth.conf``, the
    resolver's folder on the NATS volume), the ``APEX`` account's public key (KEDA reads
    the consumers' lag under it) and, with ``tls_hosts``, a development CA and a server
    certificate for those names (``tls/``). ``owner``: the services' ``.creds``,
    ``issuer.json`` and ``system.creds`` (auth's, for service accounts) are chowned to this uid and gid (compose mounts a file with its owner and mode, and the
    services run as uid 10001). Returns the files written."""
    from apex_cli.natstls import ensure_dev_tls

    auth = NatsAuth.ensure(out)
    server = out / SERVER_AUTH
    _write_secret(server, auth.server_config(resolver_dir))
    server.chmod(0o644)  # JWTs and public keys only: no secret in it
    account = out / ACCOUNT_ID
    account.write_text(auth.account.public)  # no newline: KEDA takes the value as is
    written = [out / "keys.json", *(auth.creds_path(name) for name in (*SERVICES, ADMIN, "system"))]
    written.append(auth.issuer_path)  # the auth service's, for tenants' service accounts
    written += [server, account]
    if tls_hosts is not None:
        tls = ensure_dev_tls(out / "tls", tls_hosts)
        written += [tls.ca, tls.cert, tls.key]
    if owner is not None:
        # the services' users, and what auth alone mounts to issue tenants' service accounts
        for path in (*(auth.creds_path(s) for s in SERVICES), auth.issuer_path, auth.creds_path("system")):
            os.chown(path, *owner)
    return written


def run_init(out: Path, *, tls: bool, hosts: list[str] | None, owner: str | None) -> int:
    """The command line of ``init_deployment``: prints the files and where each goes."""
    from apex_cli.natstls import DEFAULT_HOSTS

    ids: tuple[int, int] | None = None
    if owner:
        uid, _, gid = owner.partition(":")
        if not (uid.isdigit() and (gid or uid).isdigit()):
            print(f"--owner {owner}: use UID:GID, e.g. 10001:10001", file=sys.stderr)
            return 2
        ids = (int(uid), int(gid or uid))
    if tls and (out / "tls" / "tls.crt").exists():
        print(f"{out / 'tls'}: kept as it is (delete it for a new CA and certificate)")
    try:
        written = init_deployment(out, tls_hosts=tuple(hosts or DEFAULT_HOSTS) if tls else None, owner=ids)
    except PermissionError as exc:
        print(f"{exc}: --owner needs root (or chown the services' .creds yourself)", file=sys.stderr)
        return 1
    for path in written:
        print(f"{oct(path.stat().st_mode & 0o777)[2:]:>4} {path}")
    print(f"\nNATS credentials in {out}: docs/deploy.md (NATS authentication) says where each file goes.")
    return 0
