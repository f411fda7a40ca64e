"""``apex nats-auth init``: the files compose and the k8s store take, private where they
hold a secret, kept across runs, and no seed outside the files that must hold one."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from apex_cli.main import main
from apex_runtime.buspermissions import SERVICES

SEED = re.compile(r"\bS[OAU][A-Z2-7]{56}\b")


def test_init_writes_every_file_private_where_secret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "nats-auth"
    assert main(["nats-auth", "init", "--out", str(out), "--tls"]) == 0
    secret = [
        "keys.json",
        *(f"{s}.creds" for s in (*SERVICES, "admin", "system")),
        "issuer.json",
        "tls/tls.key",
    ]
    public = ["server-auth.conf", "apex-account.pub", "tls/ca.crt", "tls/tls.crt"]
    for name in secret:
        assert (out / name).stat().st_mode & 0o777 == 0o600, name
    for name in public:
        assert (out / name).is_file() and not SEED.search((out / name).read_text()), name
    assert out.stat().st_mode & 0o777 == 0o700
    printed = capsys.readouterr().out
    assert all(str(out / name) in printed for name in (*secret, *public))


def test_init_again_keeps_the_keys_and_the_ca(tmp_path: Path) -> None:
    out = tmp_path / "nats-auth"
    assert main(["nats-auth", "init", "--out", str(out), "--tls"]) == 0
    seeds, ca = json.loads((out / "keys.json").read_text()), (out / "tls" / "ca.crt").read_bytes()
    assert main(["nats-auth", "init", "--out", str(out), "--tls"]) == 0
    assert json.loads((out / "keys.json").read_text()) == seeds
    assert (out / "tls" / "ca.crt").read_bytes() == ca


def test_owner_is_given_to_the_services_creds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "nats-auth"
    assert main(["nats-auth", "init", "--out", str(out), "--owner", "ten:ten"]) == 2
    assert "UID:GID" in capsys.readouterr().err
    me = f"{os.getuid()}:{os.getgid()}"  # chown to oneself needs no privilege
    assert main(["nats-auth", "init", "--out", str(out), "--owner", me]) == 0
    for name in (*(f"{service}.creds" for service in SERVICES), "issuer.json", "system.creds"):
        stat = (out / name).stat()
        assert (stat.st_uid, stat.st_gid) == (os.getuid(), os.getgid())
