"""The readable report: the figures, the ratios that are the claims, and the targets."""

from __future__ import annotations

from typing import Any


def _get(d: dict[str, Any], *path: Any, default: Any = None) -> Any:
    for key in path:
        present = (
            key in d if isinstance(d, dict) else isinstance(d, list) and isinstance(key, int) and key < len(d)
        )
        if not present:
            return default
        d = d[key]
    return d


def _ratio(a: float | None, b: float | None) -> str:
    if not a or not b:
        return "n/a"
    return f"{a / b:.1f}×"


def _target(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "**missed**")


def write_markdown(r: dict[str, Any]) -> str:
    apex, peer = r.get("apex", {}), r.get("peer", {})
    seq = apex.get("golden_sequential", {})
    terminal_p50 = _get(seq, "terminal_ms", "p50", "median")
    first_p50 = _get(seq, "first_event_ms", "p50", "median")
    accepted_p50 = _get(seq, "run_accepted_ms", "p50", "median")
    peer_terminal = _get(peer, "sequential", "terminal_ms", "p50")
    peer_first = _get(peer, "sequential", "first_event_ms", "p50")
    js_rtt = _get(apex, "floor_jetstream", "round_trip_ms", "p50")
    ws_rtt = _get(apex, "floor_websocket", "echo_round_trip_ms", "p50")
    agents = _get(apex, "floor_agents_in_process", "four_agents_ms", "p50")
    conc = {c["users"]: c for c in apex.get("golden_concurrent", [])}
    peer_conc = {c["users"]: c for c in peer.get("concurrent", [])}
    fan = _get(apex, "gateway_fanout", "frames_per_s", "median")
    fan_floor = _get(apex, "floor_websocket", "fanout_frames_per_s", "median")
    idle_kb = _get(apex, "gateway_idle", "kb_per_connection")
    replay = _get(apex, "gateway_replay", "events_per_s")
    ingest = _get(apex, "ingest", "ndjson", "stored_rows_per_s")
    lag_p99 = max(
        (v.get("p99", 0) for v in (_get(apex, "projections", "lag_ms") or {}).values()), default=None
    )
    drops = apex.get("dropped_connection", {})
    peer_drops = peer.get("dropped_connection", {})
    lines = [
        "# Apex benchmark",
        "",
        f"Command: `{r['command']}` · started {r['started_at']} · {r['duration_s']} s · "
        f"{r['machine_before']['cores']} cores, load before {r['machine_before']['load_avg_1_5_15']}, "
        f"after {r['machine_after']['load_avg_1_5_15']}",
        "",
        "## Claims (ratios measured in the same run)",
        "",
        "| claim | figure | target |",
        "|---|---|---|",
        f"| golden path p50 vs LangGraph local server | Apex {terminal_p50} ms, peer {peer_terminal} ms: "
        f"**{_ratio(peer_terminal, terminal_p50)} faster** | ≥ 10× — {_target(_at_least(peer_terminal, terminal_p50, 10))} |",
        f"| first event p50 vs peer | Apex {first_p50} ms (run.accepted {accepted_p50} ms), peer {peer_first} ms: "
        f"{_ratio(peer_first, first_p50)} | ≤ 10 ms — {_target(None if first_p50 is None else first_p50 <= 10)} |",
        f"| golden path p50 sequential | {terminal_p50} ms | ≤ 50 ms — "
        f"{_target(None if terminal_p50 is None else terminal_p50 <= 50)} |",
    ]
    for users in sorted(conc):
        a, p = conc[users].get("runs_per_s"), _get(peer_conc, users, "runs_per_s")
        target = " ≥ 3× at 50 — " + _target(_at_least(a, p, 3)) if users == 50 else ""
        lines.append(f"| runs/s at {users} concurrent users | Apex {a}, peer {p}: {_ratio(a, p)} |{target} |")
    lines += [
        f"| golden path as a multiple of its floors | {_ratio(terminal_p50, js_rtt)} one JetStream round trip "
        f"({js_rtt} ms), {_ratio(terminal_p50, ws_rtt)} one WebSocket echo ({ws_rtt} ms), "
        f"{_ratio(terminal_p50, agents)} the four agents in process ({agents} ms) | |",
        f"| events lost or duplicated over {drops.get('trials')} dropped connections | Apex "
        f"{drops.get('events_lost')} lost / {drops.get('events_duplicated')} duplicated; peer "
        f"{peer_drops.get('events_lost')} lost / {peer_drops.get('events_duplicated')} duplicated in "
        f"{peer_drops.get('trials_with_loss_or_dup')} of {peer_drops.get('trials')} trials | zero — "
        f"{_target(None if not drops else drops.get('events_lost', 1) + drops.get('events_duplicated', 1) == 0)} |",
        f"| fan-out vs bare WebSocket | {fan} vs {fan_floor} frames/s: {_ratio(fan, fan_floor)} | ≥ 0.5× — "
        f"{_target(None if not fan or not fan_floor else fan / fan_floor >= 0.5)} |",
        f"| gateway memory per idle connection | {idle_kb} KB | ≤ 30 KB — "
        f"{_target(None if idle_kb is None else idle_kb <= 30)} |",
        f"| replay to a reconnecting client | {replay} events/s | ≥ 20,000 — "
        f"{_target(None if replay is None else replay >= 20_000)} |",
        f"| usage ingest (NDJSON, until stored) | {ingest} rows/s | ≥ 50,000 — "
        f"{_target(None if ingest is None else ingest >= 50_000)} |",
        f"| projection lag p99 at {_get(apex, 'projections', 'rate')} events/s | {lag_p99} ms (worst store) | "
        f"≤ 500 ms — {_target(None if lag_p99 is None else lag_p99 <= 500)} |",
        "",
        "Every figure with its spread is in `latest.json`; versions of Apex's and the peer's dependencies too.",
        "",
    ]
    return "\n".join(lines)


def _at_least(numerator: float | None, denominator: float | None, factor: float) -> bool | None:
    if not numerator or not denominator:
        return None
    return numerator / denominator >= factor
