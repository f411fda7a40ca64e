"""Where each service spends its CPU while runs go through it: ``py-spy record`` sampled
from outside the processes (``--format raw``, collapsed stacks) while a load runs, then
summed per function (self and inclusive) and per package.

py-spy reads the processes' memory with ptrace; when the kernel refuses (a container
without CAP_SYS_PTRACE, Yama's ptrace_scope), the profile says "not available" and why."""

from __future__ import annotations

import asyncio
import re
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")
_REFUSED = ("Permission denied", "Operation not permitted", "ptrace", "EPERM")


def py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def _short(file: str) -> str:
    """A source path as a reader finds it: from the package (``nats/js/client.py``)."""
    for marker in ("site-packages/", "/src/", "/lib/python3.11/"):
        if marker in file:
            return file.rsplit(marker, 1)[1]
    return file.rsplit("/", 2)[-1] if "/" in file else file


def _package(file: str) -> str:
    short = _short(file)
    if "site-packages/" in file or "/src/" in file:
        return short.split("/", 1)[0].removesuffix(".py")
    if "/lib/python3.11/" in file:
        return "stdlib:" + short.split("/", 1)[0].removesuffix(".py")
    return short


def _frame(raw: str) -> tuple[str, str]:
    found = _FRAME.match(raw.strip())
    if found is None:
        return raw.strip(), "?"
    return f"{found['func']} ({_short(found['file'])})", found["file"]


# Leaves where a thread waits (py-spy's idle detection misses some of them); the bench's
# own counting thread (bench/instrument) is not the service's work either.
_WAITING = ("Condition.wait", "Event.wait", "Thread.join", "sleep", "select", "Queue.get", "_worker")
_BENCH = "sitecustomize.py"


def summarise(collapsed: str, top: int = 12) -> dict[str, Any]:
    """Self and inclusive shares per function and self shares per package, from py-spy's
    raw output (``frame;frame;... count`` a line, outermost frame first), over the busy
    samples: stacks of waiting threads and of the bench's own thread are counted apart.
    A stack ending in the event loop's ``Runner.run`` is uvloop's own C code (reading
    sockets, running callbacks, or waiting): kept, and named so."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    total = waiting = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame(f) for f in stack.split(";") if f]
        if not frames or any(file.endswith(_BENCH) for _, file in frames):
            continue
        leaf, leaf_file = frames[-1]
        if leaf.split(" (", 1)[0] in _WAITING:
            waiting += count
            continue
        total += count
        own[leaf] += count
        packages[_package(leaf_file)] += count
        for name in {name for name, _ in frames}:
            inclusive[name] += count

    def share(counter: Counter[str]) -> list[list[Any]]:
        return [[name, round(100 * n / total, 1)] for name, n in counter.most_common(top)] if total else []

    return {
        "samples": total,
        "waiting_samples": waiting,
        "top_self_pct": share(own),
        "top_inclusive_pct": share(inclusive),
        "packages_self_pct": share(packages),
    }


async def _record(binary: str, pid: int, seconds: float, rate: int, out: Path) -> str:
    proc = await asyncio.create_subprocess_exec(
        binary,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(max(1, round(seconds))),
        "--rate",
        str(rate),
        "--format",
        "raw",
        "--output",
        str(out),
        "--nonblocking",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await proc.communicate()
    return "" if proc.returncode == 0 else output.decode(errors="replace").strip()[-400:]


async def profile(
    pids: Mapping[str, int],
    seconds: float,
    load: Callable[[], Awaitable[Any]],
    rate: int = 100,
    binary: str | None = None,
) -> dict[str, Any]:
    """Samples every process of ``pids`` for ``seconds`` while ``load()`` runs (the load
    runs whether or not the profile can be taken)."""
    binary = binary or py_spy()
    if binary is None:
        return {
            "available": False,
            "reason": "py-spy is not installed (make install puts it in .venv)",
            "load": await load(),
        }
    folder = Path(tempfile.mkdtemp(prefix="apex-bench-pyspy-"))
    recorders = {
        name: asyncio.create_task(_record(binary, pid, seconds, rate, folder / f"{name}.txt"))
        for name, pid in pids.items()
    }
    load_result = await load()
    errors = {name: await task for name, task in recorders.items()}
    services: dict[str, Any] = {}
    for name, error in errors.items():
        path = folder / f"{name}.txt"
        if error or not path.exists():
            services[name] = {"available": False, "reason": error or "no output"}
            continue
        services[name] = summarise(path.read_text())
    refused = [n for n, e in errors.items() if e and any(word in e for word in _REFUSED)]
    out: dict[str, Any] = {
        "available": len(refused) < len(pids),
        "rate_hz": rate,
        "seconds": seconds,
        "mode": "--nonblocking (the services are never paused)",
        "services": services,
        "load": load_result,
    }
    if refused:
        out["reason"] = f"the kernel refused ptrace for {', '.join(refused)}: " + errors[refused[0]][:200]
    shutil.rmtree(folder, ignore_errors=True)
    return out
