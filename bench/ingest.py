"""Usage ingest rate through the real gateway: a 1,000,000-row NDJSON upload (and the same
as CSV) into a platform started with ``apex up`` on free ports in a temporary folder.

Prints two rates per format: rows/s until the gateway answered (every row read,
validated, checked for duplicates and published to the bus) and rows/s until every row
was stored in ClickHouse ``llm_usage`` (the usage summary counts them all).

Run by hand: ``.venv/bin/python -m bench.ingest [--rows N] [--formats ndjson,csv]``.
Never part of ``make test``.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson

from tests.e2e.platform import platform_env

FIELDS = (
    "ts",
    "provider",
    "model",
    "workload",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "latency_ms",
    "status",
    "prompt_hash",
    "request_id",
)
MODELS = (
    ("openai", "gpt-4o"),
    ("openai", "gpt-4o-mini"),
    ("anthropic", "claude-sonnet-4"),
    ("google", "gemini-2.5-flash"),
    ("mistral", "mistral-large"),
)


def records(count: int, tag: str) -> Iterator[dict[str, object]]:
    rng = random.Random(7)
    start = datetime.now(UTC) - timedelta(days=30)
    for n in range(count):
        provider, model = MODELS[n % len(MODELS)]
        prompt = rng.randint(100, 8000)
        yield {
            "ts": (start + timedelta(seconds=n * 2.5)).isoformat(),
            "provider": provider,
            "model": model,
            "workload": f"app-{n % 12}",
            "prompt_tokens": prompt,
            "completion_tokens": rng.randint(5, 900),
            "cached_tokens": prompt // 2 if n % 4 == 0 else 0,
            "latency_ms": rng.randint(150, 9000),
            "status": "ok" if n % 50 else "rate_limited",
            "prompt_hash": f"p{n % 5000}",
            "request_id": f"{tag}-{n}",
        }


def write(path: Path, kind: str, count: int) -> int:
    with path.open("wb") as out:
        if kind == "csv":
            out.write((",".join(FIELDS) + "\n").encode())
            for r in records(count, kind):
                out.write((",".join(str(r[f]) for f in FIELDS) + "\n").encode())
        else:
            for r in records(count, kind):
                out.write(orjson.dumps(r) + b"\n")
    return path.stat().st_size


class Platform:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = platform_env(home)
        self.env.update({"APEX_LOG_LEVEL": "WARNING", "APEX_UPLOAD_MAX_BYTES": str(2 * 1024**3)})
        self.gateway = f"http://127.0.0.1:{self.env['APEX_GATEWAY_PORT']}"
        self.auth = f"http://127.0.0.1:{self.env['APEX_AUTH_PORT']}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.home / "apex-up.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "apex_cli", "up"],
            env=self.env,
            cwd=self.home,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if all(
                    httpx.get(f"http://127.0.0.1:{self.env[variable]}/readyz", timeout=1).status_code == 200
                    for variable in (
                        "APEX_GATEWAY_PORT",
                        "APEX_AUTH_PORT",
                        "APEX_ORCHESTRATOR_PORT",
                        "APEX_AGENTS_PORT",
                        "APEX_TOOLS_PORT",
                        "APEX_PERSISTENCE_PORT",
                    )
                ):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError("the platform did not become ready")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)

    def token(self) -> str:
        email, password = f"bench-{uuid.uuid4().hex[:8]}@example.com", "correct horse battery staple"
        httpx.post(
            f"{self.auth}/auth/register",
            json={"email": email, "password": password, "tenant": email},
            timeout=30,
        ).raise_for_status()
        login = httpx.post(f"{self.auth}/auth/login", json={"email": email, "password": password}, timeout=30)
        return str(login.raise_for_status().json()["access_token"])


def upload(platform: Platform, path: Path, kind: str, rows: int) -> tuple[float, float, dict[str, object]]:
    headers = {
        "Authorization": f"Bearer {platform.token()}",
        "Content-Type": "text/csv" if kind == "csv" else "application/x-ndjson",
    }

    def body() -> Iterator[bytes]:
        with path.open("rb") as source:
            while chunk := source.read(1 << 20):
                yield chunk

    started = time.perf_counter()
    answer = (
        httpx.post(
            f"{platform.gateway}/api/v1/usage",
            content=body(),
            headers=headers,
            timeout=httpx.Timeout(1800, connect=10),
        )
        .raise_for_status()
        .json()
    )
    answered = time.perf_counter() - started
    while True:
        summary = httpx.get(f"{platform.gateway}/api/v1/usage/summary", headers=headers, timeout=60).json()
        if summary.get("requests", 0) >= rows:
            return answered, time.perf_counter() - started, answer
        if time.perf_counter() - started > 3600:
            raise RuntimeError(f"only {summary.get('requests')} of {rows} rows stored after an hour")
        time.sleep(0.5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--formats", default="ndjson,csv")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="apex-bench-"))
    platform = Platform(home)
    try:
        platform.start()
        for kind in args.formats.split(","):
            path = home / f"usage.{kind}"
            size = write(path, kind, args.rows)
            answered, stored, answer = upload(platform, path, kind, args.rows)
            assert answer["accepted"] == args.rows, answer
            print(
                f"{kind}: {args.rows:,} rows, {size / 1e6:.0f} MB: gateway answered in {answered:.1f} s "
                f"({args.rows / answered:,.0f} rows/s); all stored in ClickHouse after {stored:.1f} s "
                f"({args.rows / stored:,.0f} rows/s end to end)",
                flush=True,
            )
    finally:
        platform.stop()
        shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
