"""Recovery time after a SIGKILL: from the kill of a service that holds a run's work to the
run's next event that needed that service. Run by hand (not part of ``make test``)::

    .venv/bin/python -m bench.recovery                    # 5 trials per service
    .venv/bin/python -m bench.recovery --trials 10 --services tools
    .venv/bin/python -m bench.recovery --no-standby       # only apex up's restart

It starts the whole platform with ``apex up`` in a temporary folder (free ports), gives
the benchmark user 3 days of usage (so runs make real tool calls), and by default runs a
second replica of the service under test, as production does: the work of the killed
replica is redelivered to the survivor once its ack wait expires. For each trial it sends
a message over the WebSocket and, when the run reaches the moment named below, kills the
replica that holds the run's work (the one whose /metrics shows work in flight), then
times the kill against the arrival of the event named below:

| service | killed when the client sees | recovered when the client sees |
|---|---|---|
| orchestrator | ``agent_started`` of the data helper | the next ``agent_started`` (the reporting step the orchestrator must order) or the run's end |
| agents | a ``tool_executing`` of the data helper | the data helper's next event |
| tools | triage's ``tool_executing`` (the only call then in flight) | that call's ``tool_completed`` |

Events stamped before the kill do not count (the service had finished that part of the
work in time); a trial whose work was no longer in flight at the kill is reported as
such. Prints one line per trial, then the median and maximum per service.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from apex_cli.demo_data import generate
from apex_cli.embedded import free_port
from apex_contracts import TERMINAL
from tests.e2e.platform import Platform, User, platform_env
from tests.e2e.wsclient import open_socket, recv, send

Event = dict[str, Any]


@dataclass(frozen=True)
class Plan:
    trigger: Callable[[Event], bool]
    recovered: Callable[[Event, Event], bool]  # (event, trigger event)


BUSY = {"orchestrator": "runs_in_flight", "agents": "work_in_flight", "tools": "work_in_flight"}
PLANS: dict[str, Plan] = {
    "orchestrator": Plan(
        trigger=lambda e: e["type"] == "agent_started" and e["data"]["agent"] == "data_helper",
        recovered=lambda e, _t: e["type"] == "agent_started" or e["type"] in TERMINAL,
    ),
    "agents": Plan(
        trigger=lambda e: e["type"] == "tool_executing" and e["data"].get("agent") == "data_helper",
        recovered=lambda e, _t: (
            e["type"] in ("agent_thinking", "agent_completed", "agent_failed")
            and e["data"].get("agent") == "data_helper"
        ),
    ),
    "tools": Plan(
        # triage's one call: the only call in flight, so the busiest replica is running it
        trigger=lambda e: e["type"] == "tool_executing" and e["data"].get("agent") == "triage",
        recovered=lambda e, t: e["type"] == "tool_completed" and e["data"]["call_id"] == t["data"]["call_id"],
    ),
}


@dataclass
class Trial:
    service: str
    recovery_s: float | None
    outcome: str
    events: int = 0
    killed: str = ""


@dataclass
class Replica:
    """One running replica of the service under test: its pid and ops port."""

    pid: Callable[[], int]
    port: int
    name: str

    async def busy(self, figure: str) -> float:
        try:
            async with httpx.AsyncClient() as http:
                text = (await http.get(f"http://127.0.0.1:{self.port}/metrics", timeout=2)).text
        except httpx.HTTPError:
            return 0.0
        for line in text.splitlines():
            if line.startswith("apex_service_detail{") and f'name="{figure}"' in line:
                return float(line.rsplit(" ", 1)[1])
        return 0.0


async def _kill_busiest(service: str, replicas: list[Replica]) -> tuple[Replica, float]:
    """Kills the replica with the most work in flight; returns it and the kill's time."""
    loads = [await replica.busy(BUSY[service]) for replica in replicas]
    victim = replicas[loads.index(max(loads))]
    os.kill(victim.pid(), signal.SIGKILL)
    return victim, time.time()


async def one_trial(platform: Platform, user: User, service: str, replicas: list[Replica]) -> Trial:
    plan = PLANS[service]
    ws = await open_socket(platform.ws_url, user.access_token)
    try:
        await recv(ws)
        await send(
            ws,
            {
                "type": "message.send",
                "client_msg_id": uuid.uuid4().hex,
                "text": "Where is my LLM spend going and how do I cut it?",
            },
        )
        accepted = await recv(ws)
        run_id = accepted["run_id"]
        killed_at: float | None = None
        killed = ""
        trigger: Event | None = None
        recovery: float | None = None
        seen = 0
        while True:
            frame = await recv(ws, timeout=120)
            if frame.get("type") != "event" or frame["event"].get("run_id") != run_id:
                continue
            event, arrived = frame["event"], time.time()
            seen += 1
            if killed_at is None and plan.trigger(event):
                trigger = event
                victim, killed_at = await _kill_busiest(service, replicas)
                killed = victim.name
            elif (
                killed_at is not None
                and recovery is None
                and trigger is not None
                and _stamped(event) > killed_at
                and plan.recovered(event, trigger)
            ):
                recovery = arrived - killed_at
            if event["type"] in TERMINAL:
                return Trial(service, recovery, event["type"], seen, killed)
    finally:
        await ws.close()


def _spawn_spare(platform: Platform, service: str) -> tuple[subprocess.Popen[bytes], int]:
    """A second replica of ``service`` beside the one ``apex up`` runs, and its port."""
    port = free_port()
    proc = platform.spawn_service(service, **{f"APEX_{service.upper()}_PORT": str(port)})
    _wait_ready(f"http://127.0.0.1:{port}/readyz")
    return proc, port


def _stamped(event: Event) -> float:
    return datetime.fromisoformat(event["occurred_at"]).timestamp()


def _wait_ready(url: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(url)


async def bench(services: list[str], trials: int, standby: bool) -> list[Trial]:
    home = Path(tempfile.mkdtemp(prefix="apex-bench-recovery-"))
    home.chmod(0o755)
    platform = Platform(home, platform_env(home))
    results: list[Trial] = []
    try:
        print(f"starting the platform in {home} ...", flush=True)
        platform.start()
        user = platform.register()
        platform.upload(user, list(generate(days=3)))
        await asyncio.sleep(3.0)  # the upload is ingested asynchronously
        for service in services:
            managed = Replica(
                lambda s=service: platform.pid(s),
                int(platform.env[f"APEX_{service.upper()}_PORT"]),
                "apex up's",
            )
            spare: list[tuple[subprocess.Popen[bytes], int]] = []
            try:
                for n in range(trials):
                    replicas = [managed]
                    if standby:
                        if not spare or spare[-1][0].poll() is not None:
                            spare.append(_spawn_spare(platform, service))
                        proc, port = spare[-1]
                        replicas.append(Replica(lambda p=proc: p.pid, port, "standby"))
                    old_pid = platform.pid(service)
                    trial = await one_trial(platform, user, service, replicas)
                    results.append(trial)
                    shown = (
                        "not in flight at the kill"
                        if trial.recovery_s is None
                        else f"{trial.recovery_s:6.2f} s"
                    )
                    print(
                        f"{service:<13} trial {n + 1}: {shown}  (killed the {trial.killed} replica; "
                        f"{trial.outcome}, {trial.events} events)",
                        flush=True,
                    )
                    if trial.killed == managed.name:
                        await asyncio.to_thread(platform.wait_restarted, service, old_pid, 90.0)
                        _wait_ready(f"http://127.0.0.1:{managed.port}/readyz")
                    await asyncio.sleep(2.0)
            finally:
                for proc, _port in spare:
                    if proc.poll() is None:
                        proc.terminate()
                        proc.wait(30)
    finally:
        platform.stop()
    return results


def report(results: list[Trial], standby: bool) -> None:
    mode = "with a standby replica" if standby else "single replica, restarted by apex up"
    print(f"\nrecovery after SIGKILL ({mode}): kill -> the run's next event that needed the service")
    print(f"{'service':<13}{'trials':>7}{'in flight':>11}{'median s':>10}{'max s':>8}  outcomes")
    for service in dict.fromkeys(t.service for t in results):
        mine = [t for t in results if t.service == service]
        figures = [t.recovery_s for t in mine if t.recovery_s is not None]
        outcomes = ", ".join(sorted({t.outcome for t in mine}))
        median = f"{statistics.median(figures):.2f}" if figures else "-"
        worst = f"{max(figures):.2f}" if figures else "-"
        print(f"{service:<13}{len(mine):>7}{len(figures):>11}{median:>10}{worst:>8}  {outcomes}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--services", nargs="+", default=list(PLANS), choices=list(PLANS))
    parser.add_argument("--no-standby", dest="standby", action="store_false")
    args = parser.parse_args()
    results = asyncio.run(bench(args.services, args.trials, args.standby))
    report(results, args.standby)


if __name__ == "__main__":
    main()
