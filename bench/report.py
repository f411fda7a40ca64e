"""The readable report: issue 18's target table (each figure now, its target, the ratio
to the peers and floors measured in the same run, and, given an earlier run, before and
after), then the detail behind it (bench.report_detail)."""

from __future__ import annotations

from typing import Any

from bench.report_detail import detail_sections

STORES = ("postgres", "redis", "clickhouse")
# "Halved" is against the platform before its operations were cut, not against whichever
# run is passed as the baseline: the counts of the first three runs that reported the
# figure were 146.0 (45ccb19), 132.5 (1f123d8) and 129.2 (56d02af); the lowest is kept.
FIRST_NATS_OPS_PER_RUN = 129.2


def get(d: Any, *path: Any, default: Any = None) -> Any:
    for key in path:
        if isinstance(d, dict) and key in d or isinstance(d, list) and isinstance(key, int) and key < len(d):
            d = d[key]
        else:
            return default
    return d


def ratio(a: float | None, b: float | None) -> str:
    if not a or not b:
        return "n/a"
    return f"{a / b:.1f}×"


def faster(apex_ms: float | None, peer_ms: float | None) -> str:
    """How Apex compares with a peer's time: "Apex 4.2× faster" or "Apex 1.9× slower"."""
    if not apex_ms or not peer_ms:
        return "n/a"
    if peer_ms >= apex_ms:
        return f"Apex {peer_ms / apex_ms:.1f}× faster"
    return f"Apex {apex_ms / peer_ms:.1f}× slower"


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "**missed**")


def by_users(levels: Any, users: int) -> dict[str, Any]:
    return next((c for c in levels or [] if isinstance(c, dict) and c.get("users") == users), {})


def headline(r: dict[str, Any]) -> dict[str, float | None]:
    """The figures of issue 18's table, from one run's results (None where not measured)."""
    apex = r.get("apex") or {}
    lag = get(apex, "projections", "lag_ms") or {}
    out: dict[str, float | None] = {
        "cpu_ms_per_run": get(apex, "cost", "cpu", "total_net_ms_per_run"),
        "golden_p50_ms": get(apex, "golden_sequential", "terminal_ms", "p50", "median"),
        "first_event_p50_ms": get(apex, "golden_sequential", "first_event_ms", "p50", "median"),
        "replay_events_per_s": get(apex, "gateway_replay", "events_per_s"),
        "ingest_rows_per_s": get(apex, "ingest", "ndjson", "stored_rows_per_s"),
        "stream_p99_ms": get(r, "streaming", "model_to_client_ms", "p99"),
        "nats_ops_per_run": get(apex, "cost", "nats_ops", "sent_total"),
    }
    for store in STORES:
        out[f"lag_p99_{store}_ms"] = get(lag, store, "p99")
    for level in apex.get("golden_concurrent") or []:
        if isinstance(level, dict) and "users" in level:
            out[f"runs_per_s_{level['users']}"] = level.get("runs_per_s")
    return out


class Table:
    """Rows of the target table; with a baseline, each row ends with its figure before."""

    def __init__(self, base: dict[str, float | None] | None) -> None:
        self.base = base
        self.rows: list[str] = []

    def add(self, figure: str, apex: str, target: str, peers: str, ok: bool | None | str, key: str) -> None:
        cells = [figure, apex, target, peers, ok if isinstance(ok, str) else verdict(ok)]
        if self.base is not None:
            before = self.base.get(key)
            cells.append("n/a" if before is None else str(before))
        self.rows.append("| " + " | ".join(cells) + " |")


def _at_most(value: float | None, limit: float) -> bool | None:
    return None if value is None else value <= limit


def _at_least(value: float | None, limit: float) -> bool | None:
    return None if value is None else value >= limit


def target_rows(r: dict[str, Any], base: dict[str, float | None] | None) -> list[str]:
    apex, lg, dbos = r.get("apex") or {}, r.get("peer") or {}, r.get("durable_peer") or {}
    now, table = headline(r), Table(base)
    rtt = get(apex, "floor_jetstream", "round_trip_ms", "p50")

    cpu_ms = now["cpu_ms_per_run"]
    levels = sorted({c["users"] for c in apex.get("golden_concurrent") or [] if isinstance(c, dict)})
    dbos_level = 50 if 50 in levels else (levels[0] if levels else 50)
    dbos_cpu = get(by_users(dbos.get("concurrent"), dbos_level), "cpu", "total_net_ms_per_run")
    table.add(
        "CPU per run, all processes including NATS",
        f"{cpu_ms} ms (raw {get(apex, 'cost', 'cpu', 'total_raw_ms_per_run')})",
        "≤ 25 ms",
        f"DBOS {dbos_cpu} ms (process + Postgres, {dbos_level} users): Apex {ratio(cpu_ms, dbos_cpu)} DBOS's",
        _at_most(cpu_ms, 25),
        "cpu_ms_per_run",
    )
    for users in levels:
        mine = by_users(apex.get("golden_concurrent"), users).get("runs_per_s")
        lg_rps = by_users(lg.get("concurrent"), users).get("runs_per_s")
        db_rps = by_users(dbos.get("concurrent"), users).get("runs_per_s")
        ok: bool | None | str = "(beside the peers)"
        if users == 50:
            ok = None if not (mine and lg_rps and db_rps) else mine / lg_rps >= 3 and mine > db_rps
        table.add(
            f"runs/s at {users} concurrent users",
            str(mine),
            "≥ 3× LangGraph's local server, ahead of DBOS" if users == 50 else "",
            f"LangGraph {lg_rps} (Apex {ratio(mine, lg_rps)}), DBOS {db_rps} (Apex {ratio(mine, db_rps)})",
            ok,
            f"runs_per_s_{users}",
        )
    golden = now["golden_p50_ms"]
    lg_p50, db_p50 = (
        get(lg, "sequential", "terminal_ms", "p50"),
        get(dbos, "sequential", "terminal_ms", "p50"),
    )
    table.add(
        "golden path p50, sequential",
        f"{golden} ms = {ratio(golden, rtt)} one JetStream round trip ({rtt} ms)",
        "≤ 50 ms and ≤ 40× RTT",
        f"LangGraph {lg_p50} ms ({faster(golden, lg_p50)}), DBOS {db_p50} ms ({faster(golden, db_p50)})",
        None if golden is None or not rtt else golden <= 50 and golden / rtt <= 40,
        "golden_p50_ms",
    )
    first = now["first_event_p50_ms"]
    table.add(
        "first event p50",
        f"{first} ms",
        "≤ 10 ms",
        f"LangGraph {get(lg, 'sequential', 'first_event_ms', 'p50')} ms, "
        f"DBOS {get(dbos, 'sequential', 'first_event_ms', 'p50')} ms",
        _at_most(first, 10),
        "first_event_p50_ms",
    )
    replay = now["replay_events_per_s"]
    single = get(r.get("apex") or {}, "gateway_replay", "one_per_frame_events_per_s")
    table.add(
        "replay to a reconnecting client (events frames of up to 100)",
        f"{replay} events/s",
        "≥ 50,000",
        f"one frame per event: {single} events/s",
        _at_least(replay, 50_000),
        "replay_events_per_s",
    )
    ingest = now["ingest_rows_per_s"]
    table.add(
        "usage ingest until stored (NDJSON)",
        f"{ingest} rows/s (CSV {get(apex, 'ingest', 'csv', 'stored_rows_per_s')})",
        "≥ 100,000",
        "",
        _at_least(ingest, 100_000),
        "ingest_rows_per_s",
    )
    rate = get(apex, "projections", "rate")
    for store in STORES:
        lag = now[f"lag_p99_{store}_ms"]
        table.add(
            f"projection lag p99 at {rate} events/s: {store}",
            f"{lag} ms",
            "≤ 250 ms",
            "",
            _at_most(lag, 250),
            f"lag_p99_{store}_ms",
        )
    _streaming_row(table, r.get("streaming") or {}, now["stream_p99_ms"])
    ops = get(apex, "cost", "nats_ops") or {}
    mine_ops = now["nats_ops_per_run"]
    table.add(
        "NATS operations per run",
        f"{mine_ops} sent by the services (server: {get(ops, 'server', 'in_msgs')} in, "
        f"{get(ops, 'server', 'out_msgs')} out)",
        f"reported, and halved (first count {FIRST_NATS_OPS_PER_RUN})",
        "",
        _at_most(mine_ops, FIRST_NATS_OPS_PER_RUN / 2),
        "nats_ops_per_run",
    )
    return table.rows


def _streaming_row(table: Table, stream: dict[str, Any], p99: float | None) -> None:
    target = "every delta delivered, p99 ≤ 250 ms, lag bounded"
    events = get(stream, "delta_events_per_run", "p50")
    if not stream or stream.get("error"):
        table.add("token streaming", stream.get("error", "not run"), target, "", None, "stream_p99_ms")
        return
    every = stream.get("deltas_delivered") == stream.get("deltas_expected") and not stream.get(
        "deltas_duplicated"
    )
    bounded = stream.get("lag_bounded")
    bus = get(stream, "where_the_time_goes", "written_to_bus_ms", "p50")
    stored = get(stream, "where_the_time_goes", "written_to_consumer_ms", "p50")
    split = (
        f"; an event reaches the bus {bus} ms and an ordered consumer {stored} ms after it was written (p50)"
        if bus is not None and stored is not None
        else ""
    )
    table.add(
        f"token streaming: {stream['concurrent_runs']} runs × {stream['target_rate_per_run']} `message.delta`/s",
        f"{stream.get('deltas_delivered')} of {stream.get('deltas_expected')} chunks delivered "
        f"({stream.get('deltas_duplicated')} twice) in {events} `message.delta` per run; p99 {p99} ms "
        f"model → client; lag {'bounded' if bounded else '**not bounded**'} (p99 by third "
        f"{stream.get('p99_ms_by_third')} ms, text written at {get(stream, 'written_rate_per_run', 'p50')} "
        f"chunks/s per run){split}",
        target,
        "",
        None if p99 is None else bool(every and p99 <= 250 and bounded),
        "stream_p99_ms",
    )


def write_markdown(r: dict[str, Any], baseline: dict[str, Any] | None = None) -> str:
    base = headline(baseline) if baseline else None
    load = f"load before {get(r, 'machine_before', 'load_avg_1_5_15')}, after {get(r, 'machine_after', 'load_avg_1_5_15')}"
    lines = [
        "# Apex benchmark",
        "",
        f"Command: `{r['command']}` · started {r['started_at']} · {r['duration_s']} s "
        f"({', '.join(f'{k} {v} s' for k, v in (r.get('section_seconds') or {}).items())}) · "
        f"{get(r, 'machine_before', 'cores')} cores, {load}",
        "",
        "## Issue 18's targets (peers and floors measured in the same run)",
        "",
        "| figure | Apex | target | peers and floors | verdict |" + (" before |" if base else ""),
        "|---|---|---|---|---|" + ("---|" if base else ""),
        *target_rows(r, base),
        "",
        *detail_sections(r),
        "Every figure with its spread is in `latest.json`; versions of Apex's and the peers' dependencies too.",
        "",
    ]
    return "\n".join(lines)
