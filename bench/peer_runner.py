"""The peer a user would otherwise pick: LangGraph's local agent server (`langgraph dev`,
in-memory runtime) in its own virtual environment, running the same four steps with the
same custom events and no LLM (bench/peer/graph.py), measured by bench/peer/client.py."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from apex_cli.embedded import free_port

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".bench" / "langgraph"
PINS = ["langgraph-cli[inmem]==0.4.40", "langgraph-sdk==0.4.14", "langgraph==1.2.22"]


def ensure_venv() -> Path:
    python = VENV / "bin" / "python"
    marker = VENV / ".pins"
    if python.exists() and marker.exists() and marker.read_text() == "\n".join(PINS):
        return python
    uv = shutil.which("uv") or str(ROOT / ".tools" / "bin" / "uv")
    subprocess.run([uv, "venv", "-q", "-p", sys.executable, str(VENV)], check=True)
    subprocess.run([uv, "pip", "install", "-q", "--python", str(python), *PINS], check=True)
    marker.write_text("\n".join(PINS))
    return python


def measure(runs: int, levels: list[int], seconds: float, trials: int) -> dict[str, Any]:
    python = ensure_venv()
    app = Path(tempfile.mkdtemp(prefix="apex-peer-"))
    shutil.copy(ROOT / "bench" / "peer" / "graph.py", app / "graph.py")
    shutil.copy(ROOT / "bench" / "peer" / "langgraph.json", app / "langgraph.json")
    port = free_port()
    log = (app / "server.log").open("wb")
    server = subprocess.Popen(
        [
            str(VENV / "bin" / "langgraph"),
            "dev",
            "--no-browser",
            "--port",
            str(port),
            "--allow-blocking",
            "--n-jobs-per-worker",
            str(max(levels + [10])),
            "--server-log-level",
            "warning",
        ],
        cwd=app,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ok", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        result = subprocess.run(
            [
                str(python),
                str(ROOT / "bench" / "peer" / "client.py"),
                f"http://127.0.0.1:{port}",
                str(runs),
                ",".join(map(str, levels)),
                str(seconds),
                str(trials),
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=1800,
        )
        versions = subprocess.run(
            [
                str(python),
                "-c",
                "import importlib.metadata as m, json; print(json.dumps({p: m.version(p) for p in "
                "['langgraph', 'langgraph-api', 'langgraph-cli', 'langgraph-runtime-inmem', 'langgraph-sdk']}))",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        return {"versions": json.loads(versions.stdout), **json.loads(result.stdout.strip().splitlines()[-1])}
    finally:
        server.terminate()
        server.wait(30)
        log.close()
