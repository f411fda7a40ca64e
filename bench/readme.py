"""The README's performance table, regenerated from a run's results:
``python -m bench.readme [--results bench/results/latest.json]`` rewrites what lies between
the ``<!-- bench:table -->`` and ``<!-- /bench:table -->`` markers of README.md."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bench.report import by_users, faster, get, headline, ratio

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- bench:table -->", "<!-- /bench:table -->"


def _n(value: float | None, unit: str = "") -> str:
    if value is None:
        return "n/a"
    return f"{value:,.0f}{unit}" if value >= 100 else f"{value:g}{unit}"


def _losses(trial: dict[str, Any] | None) -> str:
    if not trial or "events_lost" not in trial:
        return "n/a"
    return f"{trial['events_lost']} lost, {trial['events_duplicated']} duplicated in {trial['trials']} trials"


def table(r: dict[str, Any]) -> str:
    apex, lg, dbos = r.get("apex") or {}, r.get("peer") or {}, r.get("durable_peer") or {}
    now = headline(r)
    golden, rtt = now["golden_p50_ms"], get(apex, "floor_jetstream", "round_trip_ms", "p50")
    lg_p50, db_p50 = (
        get(lg, "sequential", "terminal_ms", "p50"),
        get(dbos, "sequential", "terminal_ms", "p50"),
    )
    rps, lg_rps = now.get("runs_per_s_50"), by_users(lg.get("concurrent"), 50).get("runs_per_s")
    db_rps = by_users(dbos.get("concurrent"), 50).get("runs_per_s")
    db_cpu = get(by_users(dbos.get("concurrent"), 50), "cpu", "total_net_ms_per_run")
    lags = [now[f"lag_p99_{s}_ms"] for s in ("postgres", "redis", "clickhouse")]
    stream = r.get("streaming") or {}
    rows = [
        (
            "golden path p50, sequential (send → terminal event)",
            _n(golden, " ms"),
            f"{faster(golden, lg_p50)} than LangGraph ({_n(lg_p50, ' ms')}), {faster(golden, db_p50)} than DBOS "
            f"({_n(db_p50, ' ms')}); {ratio(golden, rtt)} one JetStream round trip",
        ),
        (
            "first event p50",
            _n(now["first_event_p50_ms"], " ms"),
            f"LangGraph {_n(get(lg, 'sequential', 'first_event_ms', 'p50'), ' ms')}, "
            f"DBOS {_n(get(dbos, 'sequential', 'first_event_ms', 'p50'), ' ms')}",
        ),
        (
            "runs per second, 50 concurrent users",
            _n(rps),
            f"{ratio(rps, lg_rps)} LangGraph ({_n(lg_rps)}), {ratio(rps, db_rps)} DBOS ({_n(db_rps)})",
        ),
        (
            "CPU per run, every process (NATS, Postgres, Valkey included)",
            _n(now["cpu_ms_per_run"], " ms"),
            f"DBOS {_n(db_cpu, ' ms')} (its process and Postgres)",
        ),
        ("NATS operations per run", _n(now["nats_ops_per_run"]), "sent by the services"),
        (
            "client dropped mid-run, resumed",
            _losses(apex.get("dropped_connection")),
            f"LangGraph {_losses(lg.get('dropped_connection'))}; DBOS {_losses(dbos.get('dropped_connection'))}",
        ),
        (
            "worker SIGKILLed mid-run",
            _losses(apex.get("killed_worker")),
            f"DBOS {_losses(dbos.get('killed_worker'))}; LangGraph keeps nothing across a restart",
        ),
        (
            "replay to a reconnecting client",
            _n(now["replay_events_per_s"], " events/s"),
            f"{_n(get(apex, 'gateway_replay', 'one_per_frame_events_per_s'), ' events/s')} one frame per event",
        ),
        ("usage ingest until stored (NDJSON)", _n(now["ingest_rows_per_s"], " rows/s"), ""),
        (
            "projection lag p99 at 1,000 events/s (worst store)",
            _n(max((x for x in lags if x is not None), default=None), " ms"),
            "",
        ),
        (
            f"token streaming, {stream.get('concurrent_runs')} runs × 50 deltas/s",
            f"{stream.get('deltas_delivered')} of {stream.get('deltas_expected')} delivered",
            f"p99 {_n(now['stream_p99_ms'], ' ms')} model → client",
        ),
    ]
    lines = ["| | Apex | beside it |", "|---|---|---|"] + [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)


def regenerate(readme: str, r: dict[str, Any]) -> str:
    head, start, rest = readme.partition(START)
    _, end, tail = rest.partition(END)
    if not start or not end:
        raise ValueError(f"README.md has no {START} … {END} markers")
    stamp = f"\n<!-- {r['command']}, {r['started_at']}, {get(r, 'machine_before', 'cores')} cores -->\n"
    return f"{head}{START}{stamp}{table(r)}\n{END}{tail}"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.readme")
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results" / "latest.json")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    args = parser.parse_args()
    args.readme.write_text(regenerate(args.readme.read_text(), json.loads(args.results.read_text())))


if __name__ == "__main__":
    main()
