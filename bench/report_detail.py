"""The detail behind the target table: durability beside the peers, CPU per process, NATS
operations per run, where the CPU goes (py-spy), token streaming, and the earlier claims."""

from __future__ import annotations

from typing import Any


def _get(d: Any, *path: Any) -> Any:
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def _losses(trial: dict[str, Any] | None) -> str:
    if not trial:
        return "not measured"
    if trial.get("error"):
        return f"error: {trial['error']}"
    return (
        f"{trial.get('events_lost')} lost / {trial.get('events_duplicated')} duplicated "
        f"({trial.get('trials_with_loss_or_dup')} of {trial.get('trials')} trials)"
    )


def durability(r: dict[str, Any]) -> list[str]:
    apex, lg, dbos = r.get("apex") or {}, r.get("peer") or {}, r.get("durable_peer") or {}
    killed = apex.get("killed_worker") or {}
    finished = (
        f"; {killed.get('runs_finished')} of {killed.get('trials')} runs finished"
        if killed.get("trials")
        else ""
    )
    dbos_killed = dbos.get("killed_worker") or {}
    return [
        "## What a killed client or worker loses",
        "",
        "| | Apex | LangGraph local server | DBOS |",
        "|---|---|---|---|",
        "| keeps runs through a restart | yes (JetStream, fsync on every write) | no (in memory) | yes (Postgres) |",
        f"| client dropped mid-run, resumed | {_losses(apex.get('dropped_connection'))} "
        f"| {_losses(lg.get('dropped_connection'))} | {_losses(dbos.get('dropped_connection'))} |",
        f"| worker SIGKILLed mid-run | {_losses(killed)}{finished} (services: "
        f"{', '.join(t['service'] for t in killed.get('each', []))}) | not measured (nothing survives a restart) "
        f"| {_losses(dbos_killed)}; restart {dbos_killed.get('restart_s')} s |",
        "",
    ]


def cpu_table(r: dict[str, Any]) -> list[str]:
    cost = _get(r, "apex", "cost") or {}
    if cost.get("error"):
        return ["## CPU per run", "", f"error: {cost['error']}", ""]
    per = _get(cost, "cpu", "per_process") or {}
    batch = cost.get("batch") or {}
    lines = [
        "## CPU per run, per process",
        "",
        f"Apex: a fixed batch of {batch.get('runs')} golden-path runs from {batch.get('users')} concurrent users "
        f"({batch.get('runs_per_s')} runs/s), until the bus was drained "
        f"({_get(cost, 'cpu', 'drained_after_last_run_s')} s after the last run); net = less each process's idle rate.",
        "",
        "| process | net ms/run | raw ms/run | idle ms/s |",
        "|---|---|---|---|",
    ]
    for name, p in sorted(per.items(), key=lambda kv: -kv[1]["net_ms_per_run"]):
        lines.append(f"| {name} | {p['net_ms_per_run']} | {p['raw_ms_per_run']} | {p['idle_ms_per_s']} |")
    lines.append(
        f"| **total** | **{_get(cost, 'cpu', 'total_net_ms_per_run')}** | {_get(cost, 'cpu', 'total_raw_ms_per_run')} | |"
    )
    for level in _get(r, "durable_peer", "concurrent") or []:
        dper = _get(level, "cpu", "per_process") or {}
        parts = ", ".join(f"{n} {p['net_ms_per_run']}" for n, p in dper.items())
        lines.append(
            f"\nDBOS at {level['users']} users: {_get(level, 'cpu', 'total_net_ms_per_run')} ms per run net ({parts})."
        )
    return [*lines, ""]


def ops_table(r: dict[str, Any]) -> list[str]:
    ops = _get(r, "apex", "cost", "nats_ops") or {}
    if not ops:
        return []
    lines = [
        "## NATS operations per run",
        "",
        "Counted by each service's client (bench/instrument) and by the server's monitoring endpoint, over the "
        "same batch, less what the platform does idle.",
        "",
        f"Sent by the services: **{ops.get('sent_total')}** per run. "
        f"Server: {_get(ops, 'server', 'in_msgs')} messages in, {_get(ops, 'server', 'out_msgs')} out "
        f"({_get(ops, 'server', 'in_kb')} KB in, {_get(ops, 'server', 'out_kb')} KB out), "
        f"{_get(ops, 'server', 'js_api')} JetStream API requests.",
        "",
        "| sent, by kind | per run |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in (ops.get("sent_by_kind") or {}).items()],
        "",
        "| by service | sent per run | of which |",
        "|---|---|---|",
        *[
            f"| {k} | {v} | "
            + ", ".join(
                f"{kind} {n}"
                for kind, n in ((ops.get("sent_by_service_and_kind") or {}).get(k) or {}).items()
            )
            + " |"
            for k, v in (ops.get("sent_by_service") or {}).items()
        ],
        "",
        "Stored per stream, per run: "
        + ", ".join(f"{k} {v}" for k, v in (ops.get("stored_per_stream") or {}).items()),
        "",
        "Durable consumers, per run: "
        + ", ".join(f"{k} {v}" for k, v in (ops.get("consumers") or {}).items()),
        "",
        "Received by the services, by kind: "
        + ", ".join(f"{k} {v}" for k, v in (ops.get("received_by_kind") or {}).items()),
        "",
    ]
    return lines


def profile_section(r: dict[str, Any], top: int = 6) -> list[str]:
    prof = _get(r, "apex", "profile") or {}
    if not prof:
        return []
    if prof.get("error") or not prof.get("available"):
        return [
            "## Where the CPU goes",
            "",
            f"py-spy profile not available: {prof.get('reason') or prof.get('error')}",
            "",
        ]
    load = prof.get("load") or {}
    lines = [
        "## Where the CPU goes (py-spy)",
        "",
        f"Sampled at {prof.get('rate_hz')} Hz for {prof.get('seconds')} s {prof.get('mode')}, while "
        f"{load.get('users')} users ran {load.get('runs')} runs; shares of each service's busy samples. "
        "`Runner.run` as a leaf is uvloop's own C code (socket reads and writes, callbacks, or waiting): "
        "py-spy does not see inside it.",
        "",
    ]
    for name, svc in (prof.get("services") or {}).items():
        if not svc.get("samples"):
            lines.append(f"- **{name}**: {svc.get('reason') or 'no samples'}")
            continue
        own = "; ".join(f"{f} {p}%" for f, p in svc["top_self_pct"][:top])
        packages = ", ".join(f"{p} {s}%" for p, s in svc["packages_self_pct"][:top])
        lines.append(f"- **{name}** ({svc['samples']} samples). Packages: {packages}. Top frames: {own}")
    return [*lines, ""]


def streaming_section(r: dict[str, Any]) -> list[str]:
    s = r.get("streaming") or {}
    if not s or s.get("error"):
        return ["## Token streaming", "", f"{s.get('error', 'not run')}", ""] if s else []
    return [
        "## Token streaming",
        "",
        f"{s.get('concurrent_runs')} concurrent runs, each a model streaming {s.get('deltas_per_run')} chunks one every "
        f"{s.get('interval_ms')} ms (writers released together: {s.get('writers_released_together')}); "
        f"{s.get('elapsed_s')} s in all (deadline {s.get('deadline_s')} s).",
        "",
        f"- delivered {s.get('deltas_delivered')} of {s.get('deltas_expected')} chunks, "
        f"{s.get('deltas_duplicated')} deltas twice; runs with every chunk in order: {s.get('runs_with_every_delta_in_order')}; "
        f"final text equal to the deltas: {s.get('runs_whose_text_equals_the_deltas')}; outcomes {s.get('outcomes')}",
        f"- model → client ms: {s.get('model_to_client_ms')}",
        f"- event written → client ms: {s.get('written_to_client_ms')}",
        f"- the model's send rate per run (target {s.get('target_rate_per_run')}/s): {s.get('model_rate_per_run')}",
        f"- chunks written to the log per second per run: {s.get('written_rate_per_run')}",
        f"- `message.delta` events per run (a delta carries the chunks that arrived while the previous "
        f"one was stored): {s.get('delta_events_per_run')}",
        f"- p99 by third of the {s.get('streaming_window_s')} s window: {s.get('p99_ms_by_third')}; "
        f"{s.get('delivered_per_s')} chunks/s delivered",
        *_where_streaming_time_goes(s.get("where_the_time_goes") or {}),
        "",
    ]


def _where_streaming_time_goes(w: dict[str, Any]) -> list[str]:
    if not w:
        return []
    cpu = w.get("cpu_in_window") or {}
    return [
        f"- event written → heard on the bus (a core subscription: as published, before the store): "
        f"{w.get('written_to_bus_ms')}",
        f"- event written → delivered by an ordered consumer (after JetStream stored it, fsync included): "
        f"{w.get('written_to_consumer_ms')}",
        f"- CPU over the window: the platform's processes {cpu.get('platform_busy_pct')}% of the machine, "
        f"the whole machine (the bench's clients and model server too) {cpu.get('machine_busy_pct')}% busy; "
        f"% of one core by process: {cpu.get('core_pct_by_process')}",
    ]


def earlier_claims(r: dict[str, Any]) -> list[str]:
    apex = r.get("apex") or {}
    fan = _get(apex, "gateway_fanout", "frames_per_s", "median")
    floor = _get(apex, "floor_websocket", "fanout_frames_per_s", "median")
    return [
        "## Other figures",
        "",
        f"- fan-out to {_get(apex, 'gateway_fanout', 'clients')} sockets: {fan} frames/s, bare uvicorn {floor}",
        f"- gateway memory per idle connection: {_get(apex, 'gateway_idle', 'kb_per_connection')} KB",
        f"- a file stream with an fsync per write, {_get(apex, 'floor_jetstream_store', 'in_flight')} publishes in "
        f"flight: one stream {_store(apex, 1)}; four streams {_store(apex, 4)}",
        f"- one WebSocket echo: {_get(apex, 'floor_websocket', 'echo_round_trip_ms', 'p50')} ms; the four agents "
        f"in process: {_get(apex, 'floor_agents_in_process', 'four_agents_ms', 'p50')} ms",
        "- projection rebuild events/s: "
        + ", ".join(
            f"{k} {v.get('events_per_s')}" for k, v in (_get(apex, "projections", "rebuild") or {}).items()
        ),
        "",
    ]


def _store(apex: dict[str, Any], streams: int) -> str:
    rate = _get(apex, "floor_jetstream_store", f"streams_{streams}", "messages_per_s")
    wait = _get(apex, "floor_jetstream_store", f"streams_{streams}", "publish_ms", "p50")
    return f"{rate} messages/s, {wait} ms to the ack (p50)"


def detail_sections(r: dict[str, Any]) -> list[str]:
    return [
        *durability(r),
        *cpu_table(r),
        *ops_table(r),
        *profile_section(r),
        *streaming_section(r),
        *earlier_claims(r),
    ]
