"""Where ``apex`` keeps its state and how it finds the platform it started.

``.apex/`` (or ``APEX_HOME``) holds the embedded servers' data, ``run/<name>.pid`` for
every process ``apex up`` started, and ``env``: the URLs and ports in use, so that
``apex chat``, ``apex token`` and ``apex doctor`` talk to the same platform."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

SERVICE_PORTS: dict[str, tuple[str, int]] = {
    "gateway": ("APEX_GATEWAY_PORT", 8000),
    "auth": ("APEX_AUTH_PORT", 8001),
    "orchestrator": ("APEX_ORCHESTRATOR_PORT", 8002),
    "agents": ("APEX_AGENTS_PORT", 8003),
    "tools": ("APEX_TOOLS_PORT", 8004),
    "persistence": ("APEX_PERSISTENCE_PORT", 8005),
    "ingest": ("APEX_INGEST_PORT", 8006),
}
# Start order: stores' owners first, the gateway (the door) last.
START_ORDER = ("auth", "persistence", "ingest", "tools", "agents", "orchestrator", "gateway")
INFRA_URLS = {
    "nats": ("APEX_NATS_URL", 4222),
    "postgres": ("APEX_POSTGRES_DSN", 5432),
    "redis": ("APEX_REDIS_URL", 6379),
}


@dataclass(frozen=True)
class Home:
    root: Path

    @classmethod
    def resolve(cls, explicit: str | None = None) -> Home:
        root = Path(explicit or os.environ.get("APEX_HOME") or Path.cwd() / ".apex").resolve()
        return cls(root)

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def env_file(self) -> Path:
        return self.root / "env"

    def pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def prepare(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)

    def write_env(self, values: dict[str, str]) -> None:
        self.prepare()
        lines = [f"{key}={value}" for key, value in sorted(values.items())]
        self.env_file.write_text("\n".join(lines) + "\n")

    def read_env(self) -> dict[str, str]:
        if not self.env_file.exists():
            return {}
        out = {}
        for line in self.env_file.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep:
                out[key.strip()] = value.strip()
        return out


def setting(name: str, home: Home, default: str) -> str:
    """The environment wins, then what ``apex up`` recorded, then the default."""
    return os.environ.get(name) or home.read_env().get(name) or default


def gateway_url(home: Home) -> str:
    return setting("APEX_GATEWAY_URL", home, f"http://127.0.0.1:{setting('APEX_GATEWAY_PORT', home, '8000')}")


def auth_url(home: Home) -> str:
    return setting("APEX_AUTH_URL", home, f"http://127.0.0.1:{setting('APEX_AUTH_PORT', home, '8001')}")
