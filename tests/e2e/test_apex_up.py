"""`apex up` as an operator meets it: pid files, a crash is not an outage, `apex doctor`
agrees, and SIGTERM stops every process it started."""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import psutil

from tests.e2e.platform import Platform, platform_env
from tests.e2e.wsclient import open_socket, recv, send, until_terminal

PROCESSES = (
    "nats",
    "postgres",
    "redis",
    "auth",
    "persistence",
    "ingest",
    "tools",
    "agents",
    "orchestrator",
    "gateway",
)


async def _chat(platform: Platform) -> str:
    user = platform.register()
    ws = await open_socket(platform.ws_url, user.access_token)
    await recv(ws)
    await send(
        ws, {"type": "message.send", "client_msg_id": uuid.uuid4().hex, "text": "how much did we spend?"}
    )
    accepted = await recv(ws)
    frames = await until_terminal(ws, accepted["run_id"], timeout=90)
    await ws.close()
    return str(frames[-1]["event"]["type"])


async def test_apex_up_supervises_and_stops_everything() -> None:
    home = Path(tempfile.mkdtemp(prefix="apex-up-"))
    home.chmod(0o755)
    platform = Platform(home, platform_env(home))
    platform.start()
    try:
        pids = {name: platform.pid(name) for name in PROCESSES}
        assert all(psutil.pid_exists(pid) for pid in pids.values()), pids

        doctor = subprocess.run(
            [sys.executable, "-m", "apex_cli", "doctor"],
            env=platform.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
        assert doctor.stdout.count("ok  ") >= 12

        platform.kill("tools", signal.SIGKILL)
        platform.wait_restarted("tools", pids["tools"])
        platform.kill("nats", signal.SIGKILL)
        platform.wait_restarted("nats", pids["nats"])
        assert await _chat(platform) == "run.completed"
    finally:
        platform.stop()
    assert platform.proc is not None and platform.proc.returncode == 0, platform.tail()
    alive = [name for name in PROCESSES if psutil.pid_exists(platform_pid(home, name, pids))]
    assert alive == [], f"still running after SIGTERM: {alive}"


def platform_pid(home: Path, name: str, started: dict[str, int]) -> int:
    pid_file = home / ".apex" / "run" / f"{name}.pid"
    return int(pid_file.read_text()) if pid_file.exists() else started[name]


def test_doctor_names_what_is_missing() -> None:
    home = Path(tempfile.mkdtemp(prefix="apex-doctor-"))
    env = platform_env(home)
    env["APEX_NATS_URL"] = "nats://127.0.0.1:1"
    result = subprocess.run(
        [sys.executable, "-m", "apex_cli", "doctor"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    nats_line = next(line for line in result.stdout.splitlines() if "nats://127.0.0.1:1" in line)
    assert nats_line.startswith("FAIL") and "not reachable" in nats_line
    assert all(line.startswith(("ok", "FAIL", "info")) for line in result.stdout.splitlines())
