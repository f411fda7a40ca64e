"""The whole platform as real processes, started the way a user starts it (``apex up``)
in a temporary folder on free ports, with helpers to use it and to hurt it."""

from __future__ import annotations

import base64
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil

from apex_cli.config import SERVICE_PORTS
from apex_cli.embedded import free_ports, send_signal

REPO = Path(__file__).resolve().parents[2]


@dataclass
class User:
    email: str
    password: str
    access_token: str
    refresh_token: str
    user_id: str
    tenant_id: str


@dataclass
class Platform:
    home: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.home / "apex-up.log"

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.env['APEX_GATEWAY_PORT']}"

    @property
    def auth(self) -> str:
        return f"http://127.0.0.1:{self.env['APEX_AUTH_PORT']}"

    @property
    def ws_url(self) -> str:
        return self.gateway.replace("http", "ws", 1) + "/ws"

    def start(self, timeout: float = 120.0) -> float:
        started = time.monotonic()
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "apex_cli", "up"],
                env=self.env,
                cwd=self.home,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            while time.monotonic() - started < timeout:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"apex up exited with {self.proc.returncode}:\n{self.tail()}")
                if self.all_ready():
                    return time.monotonic() - started
                time.sleep(0.25)
            raise RuntimeError(f"platform not ready after {timeout}s:\n{self.tail()}")
        except BaseException:
            self.stop()  # a platform that did not start leaves no process behind for a later test
            raise

    def all_ready(self) -> bool:
        """Every service answers /readyz 200 (the gateway alone is ready without them)."""
        try:
            return all(
                httpx.get(f"http://127.0.0.1:{self.env[variable]}/readyz", timeout=1.0).status_code == 200
                for variable, _ in SERVICE_PORTS.values()
            )
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)

    def tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def pid(self, name: str) -> int:
        return int((self.home / ".apex" / "run" / f"{name}.pid").read_text())

    def kill(self, name: str, sig: int = signal.SIGKILL) -> int:
        """Sends ``sig`` to a service; a SIGSTOP returns once the process has stopped."""
        pid = self.pid(name)
        send_signal(pid, sig)
        return pid

    def wait_restarted(self, name: str, old_pid: int, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                pid = self.pid(name)
            except (OSError, ValueError):
                pid = old_pid
            if pid != old_pid and psutil.pid_exists(pid):
                return pid
            time.sleep(0.1)
        raise TimeoutError(f"{name} was not restarted")

    def recorded_env(self) -> dict[str, str]:
        """The environment `apex up` recorded in .apex/env (infra URLs, ports)."""
        out = dict(self.env)
        for line in (self.home / ".apex" / "env").read_text().splitlines():
            key, _, value = line.partition("=")
            out[key] = value
        return out

    def nats_options(self) -> dict[str, str]:
        """Connect options for a test's own NATS client: the administrator of the APEX
        account that `apex up` recorded (the bus refuses anonymous connections)."""
        creds = self.recorded_env().get("APEX_NATS_CREDS")
        return {"user_credentials": creds} if creds else {}

    def spawn_service(self, name: str, **overrides: str) -> subprocess.Popen[bytes]:
        """Another replica of a service, outside `apex up` (the caller stops it)."""
        env = {**self.recorded_env(), **overrides}
        creds = self.home / ".apex" / "nats-auth" / f"{name}.creds"
        if creds.exists():  # its own NATS user, as `apex up` gives it
            env["APEX_NATS_CREDS"] = overrides.get("APEX_NATS_CREDS", str(creds))
        log_path = self.home / f"{name}-{uuid.uuid4().hex[:6]}.log"
        with log_path.open("ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", f"apex_{name}"],
                env=env,
                cwd=self.home,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def register(self, tenant: str | None = None) -> User:
        email = f"user-{uuid.uuid4().hex[:10]}@example.com"
        password = "correct horse battery staple"
        response = httpx.post(
            f"{self.auth}/auth/register",
            json={"email": email, "password": password, "tenant": tenant or f"T {email}"},
            timeout=10,
        )
        response.raise_for_status()
        login = httpx.post(f"{self.auth}/auth/login", json={"email": email, "password": password}, timeout=10)
        login.raise_for_status()
        tokens = login.json()
        me = httpx.get(
            f"{self.auth}/auth/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}, timeout=10
        ).json()
        return User(
            email, password, tokens["access_token"], tokens["refresh_token"], me["user_id"], me["tenant_id"]
        )

    def api(self, user: User, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {user.access_token}", **kwargs.pop("headers", {})}
        return httpx.request(method, f"{self.gateway}{path}", headers=headers, timeout=60, **kwargs)

    def upload(self, user: User, rows: list[dict[str, Any]]) -> dict[str, Any]:
        body = b"\n".join(orjson.dumps(r) for r in rows)
        response = self.api(
            user, "POST", "/api/v1/usage", content=body, headers={"Content-Type": "application/x-ndjson"}
        )
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]


def persistence_metric(platform: Platform, name: str, store: str) -> float:
    """A persistence metric for a store (-1 when not exported yet)."""
    port = platform.recorded_env()["APEX_PERSISTENCE_PORT"]
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    pattern = rf'^{name}\{{[^}}]*(?:store|breaker)="{store}"[^}}]*\}} (\S+)$'
    values = [float(m.group(1)) for m in re.finditer(pattern, text, re.MULTILINE)]
    return max(values, default=-1.0)


def platform_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APEX_")}
    env.update(
        {
            variable: str(port)
            for (variable, _), port in zip(
                SERVICE_PORTS.values(), free_ports(len(SERVICE_PORTS)), strict=True
            )
        }
    )
    env.update(
        {
            "APEX_HOME": str(home / ".apex"),
            "APEX_ENV": "test",
            "APEX_LOG_FORMAT": "text",
            "APEX_LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            # every test user comes from 127.0.0.1: the per-address throttles are tested in auth's own tests
            "APEX_AUTH_REGISTER_ADDRESS_LIMIT": "100000",
            "APEX_AUTH_LOGIN_ADDRESS_LIMIT": "100000",
            # outside development the ingest service needs its own key to seal connector keys
            "APEX_CONNECTOR_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        }
    )
    env["APEX_ALLOWED_ORIGINS"] = orjson.dumps([f"http://127.0.0.1:{env['APEX_GATEWAY_PORT']}"]).decode()
    return env
