"""The report shows every figure of issue 18's table with its target and the peers'
figures from the same run; a section that failed shows its error; given an earlier run,
each figure is shown before and after."""

from __future__ import annotations

import copy
from typing import Any

from bench.report import headline, write_markdown


def result() -> dict[str, Any]:
    seq = {"p50": {"median": 93.0}}
    return {
        "command": "python -m bench",
        "started_at": "2026-12-02T00:00:00+00:00",
        "duration_s": 600.0,
        "section_seconds": {"apex": 300.0},
        "machine_before": {"cores": 2, "load_avg_1_5_15": [0.1, 0.1, 0.1]},
        "machine_after": {"cores": 2, "load_avg_1_5_15": [0.1, 0.1, 0.1]},
        "apex": {
            "golden_sequential": {"terminal_ms": seq, "first_event_ms": {"p50": {"median": 9.5}}},
            "golden_concurrent": [{"users": 50, "runs_per_s": 150.0}, {"users": 200, "runs_per_s": 160.0}],
            "floor_jetstream": {"round_trip_ms": {"p50": 0.41}},
            "cost": {
                "batch": {"runs": 200, "users": 10, "runs_per_s": 20.0},
                "cpu": {
                    "total_net_ms_per_run": 20.0,
                    "total_raw_ms_per_run": 22.0,
                    "per_process": {
                        "nats": {"net_ms_per_run": 8.0, "raw_ms_per_run": 9.0, "idle_ms_per_s": 1.0}
                    },
                },
                "nats_ops": {"sent_total": 60.0, "sent_by_kind": {"ack": 30.0}, "server": {"in_msgs": 60.0}},
            },
            "gateway_replay": {"events_per_s": 60_000},
            "ingest": {"ndjson": {"stored_rows_per_s": 90_000}, "csv": {"stored_rows_per_s": 80_000}},
            "projections": {
                "rate": 1000.0,
                "lag_ms": {"postgres": {"p99": 200.0}, "redis": {"p99": 100.0}, "clickhouse": {"p99": 300.0}},
            },
            "dropped_connection": {
                "trials": 100,
                "events_lost": 0,
                "events_duplicated": 0,
                "trials_with_loss_or_dup": 0,
            },
            "killed_worker": {"error": "TimeoutError: agents did not come back"},
        },
        "peer": {
            "sequential": {"terminal_ms": {"p50": 1000.0}, "first_event_ms": {"p50": 980.0}},
            "concurrent": [{"users": 50, "runs_per_s": 40.0}],
        },
        "durable_peer": {
            "sequential": {"terminal_ms": {"p50": 60.0}, "first_event_ms": {"p50": 9.0}},
            "concurrent": [
                {"users": 50, "runs_per_s": 15.0, "cpu": {"total_net_ms_per_run": 80.0, "per_process": {}}}
            ],
            "killed_worker": {
                "trials": 3,
                "events_lost": 0,
                "events_duplicated": 4,
                "trials_with_loss_or_dup": 3,
            },
        },
        "streaming": {
            "concurrent_runs": 100,
            "target_rate_per_run": 50.0,
            "deltas_expected": 20_000,
            "deltas_delivered": 20_000,
            "deltas_duplicated": 0,
            "model_to_client_ms": {"p99": 120.0},
            "lag_bounded": True,
        },
    }


def row(text: str, starts: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(f"| {starts}"))


def test_every_figure_of_the_issue_has_its_row_and_verdict() -> None:
    text = write_markdown(result())
    assert "met" in row(text, "CPU per run") and "DBOS 80.0 ms" in row(text, "CPU per run")
    assert "met" in row(text, "runs/s at 50") and "LangGraph 40.0 (Apex 3.8×)" in row(text, "runs/s at 50")
    assert "**missed**" in row(text, "golden path p50"), "93 ms is over 50 ms"
    assert "226.8× one JetStream round trip" in row(text, "golden path p50")
    assert "met" in row(text, "first event p50")
    assert "met" in row(text, "replay")
    assert "**missed**" in row(text, "usage ingest")
    assert "met" in row(text, "projection lag p99 at 1000.0 events/s: postgres")
    assert "**missed**" in row(text, "projection lag p99 at 1000.0 events/s: clickhouse")
    assert "met" in row(text, "token streaming")
    assert "met" in row(text, "NATS operations per run"), "60 is under half of the first count, 129.2"


def test_a_failed_section_shows_its_error_and_the_rest_still_renders() -> None:
    r = result()
    r["streaming"] = {"error": "RuntimeError: apex up exited"}
    del r["peer"]
    text = write_markdown(r)
    assert "RuntimeError: apex up exited" in row(text, "token streaming")
    assert "TimeoutError: agents did not come back" in text
    assert "LangGraph None" in row(text, "runs/s at 50")


def test_against_a_baseline_each_figure_is_shown_before_and_after() -> None:
    before = copy.deepcopy(result())
    before["apex"]["cost"]["nats_ops"]["sent_total"] = 157.0
    before["apex"]["cost"]["cpu"]["total_net_ms_per_run"] = 89.0
    text = write_markdown(result(), before)
    assert row(text, "CPU per run").endswith("| 89.0 |")
    assert row(text, "NATS operations per run").endswith("| 157.0 |")
    assert headline(before)["nats_ops_per_run"] == 157.0


def test_operations_are_halved_against_the_first_count_not_the_baseline() -> None:
    r, before = result(), copy.deepcopy(result())
    r["apex"]["cost"]["nats_ops"]["sent_total"] = 64.7  # over half of 129.2, under half of 157
    before["apex"]["cost"]["nats_ops"]["sent_total"] = 157.0
    assert "**missed**" in row(write_markdown(r, before), "NATS operations per run")


def test_the_readme_table_is_rewritten_between_its_markers_only() -> None:
    from bench.readme import END, START, regenerate

    readme = f"# Apex\n\nbefore\n{START}\n| old | table |\n{END}\nafter\n"
    rewritten = regenerate(readme, result())
    head, _, rest = rewritten.partition(START)
    table, _, tail = rest.partition(END)
    assert head == "# Apex\n\nbefore\n" and tail == "\nafter\n"
    assert "| old | table |" not in table
    assert (
        "| golden path p50, sequential (send → terminal event) | 93 ms | Apex 10.8× faster than LangGraph"
        in table
    )
    assert "| worker SIGKILLed mid-run | n/a | DBOS 0 lost, 4 duplicated in 3 trials" in table
