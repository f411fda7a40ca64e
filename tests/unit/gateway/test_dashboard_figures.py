"""What the health dashboard computes from heartbeats: delivery latency percentiles over
trailing windows (merged exactly across gateways), service and instance states, the
delivery counters summed over gateways, the projectors' lag."""

from __future__ import annotations

import statistics
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter

from apex_gateway.dashboard.figures import (
    DELIVERY_COUNTERS,
    DOWN_SHOWN_S,
    delivery_view,
    latency_detail,
    projector_lag,
    publish_delivery_figures,
    services_view,
)
from apex_gateway.latency import BOUNDS_S, LatencyWindows, decode, encode, quantile_ms
from apex_runtime import Health

NOW = 1_800_000_000.0


def test_a_window_counts_only_its_own_minutes() -> None:
    windows = LatencyWindows()
    windows.observe(0.02, NOW - 2 * 3600)  # two hours ago
    windows.observe(0.02, NOW - 30 * 60)  # half an hour ago
    windows.observe(0.02, NOW - 60)
    windows.observe(0.02, NOW)
    assert sum(windows.counts(300, NOW)) == 2
    assert sum(windows.counts(3600, NOW)) == 3
    assert sum(windows.counts(86_400, NOW)) == 4
    assert sum(windows.counts(86_400, NOW + 86_400)) == 0, "a day later, all of it has aged out"


def test_a_minute_slot_is_reused_a_day_later_without_its_old_counts() -> None:
    windows = LatencyWindows()
    windows.observe(5.0, NOW)
    windows.observe(0.001, NOW + 86_400)
    assert windows.counts(300, NOW + 86_400) == [1] + [0] * len(BOUNDS_S)


def test_percentiles_interpolate_inside_the_bucket_like_prometheus() -> None:
    windows = LatencyWindows()
    for n in range(100):
        windows.observe(0.010 + 0.015 * (n + 0.5) / 100, NOW)  # all in (10 ms, 25 ms]
    counts = windows.counts(300, NOW)
    assert quantile_ms(counts, 0.5) == pytest.approx(17.5)
    assert quantile_ms(counts, 0.99) == pytest.approx(24.85, abs=0.051)  # rounded to 0.1 ms
    assert quantile_ms([0] * (len(BOUNDS_S) + 1), 0.5) is None
    assert quantile_ms([0] * len(BOUNDS_S) + [3], 0.5) == BOUNDS_S[-1] * 1000, "overflow: the last bound"


def test_the_estimate_stays_within_the_bucket_of_the_true_percentile() -> None:
    samples = [0.003 * 1.07**n for n in range(120)]
    windows = LatencyWindows()
    for s in samples:
        windows.observe(s, NOW)
    true_p95 = statistics.quantiles(samples, n=100, method="inclusive")[94]
    upper = next(b for b in BOUNDS_S if true_p95 <= b)
    lower = max([0.0, *(b for b in BOUNDS_S if b < true_p95)])
    assert lower * 1000 <= quantile_ms(windows.counts(300, NOW), 0.95) <= upper * 1000  # type: ignore[operator]


def test_counts_travel_in_a_heartbeat_and_back() -> None:
    counts = list(range(len(BOUNDS_S) + 1))
    assert decode(encode(counts)) == counts
    assert decode("1,2,x") is None
    assert decode("1,2") is None


def beat(
    service: str,
    instance: str,
    *,
    alive: bool = True,
    age_s: float = 1.0,
    ready: bool = True,
    status: str = "ok",
    details: dict[str, Any] | None = None,
    breakers: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "service": service,
        "instance": instance,
        "alive": alive,
        "age_s": age_s,
        "ready": ready,
        "status": status,
        "details": details or {},
        "breakers": breakers or {},
    }


def test_services_are_healthy_degraded_or_down_from_their_live_instances() -> None:
    view = services_view(
        [
            beat("gateway", "g1"),
            beat("tools", "t1"),
            beat("tools", "t2", alive=False, age_s=20),
            beat("agents", "a1", status="degraded", breakers={"llm": "open"}),
            beat("persistence", "p1", alive=False, age_s=DOWN_SHOWN_S + 1),
        ],
        expected=("gateway", "tools", "agents", "persistence", "auth"),
    )
    services = {row["service"]: row for row in view["services"]}
    assert services["gateway"]["state"] == "healthy"
    assert services["tools"] == {"service": "tools", "state": "healthy", "up": 1, "live": 1, "down": 1}
    assert services["agents"]["state"] == "degraded"
    assert services["persistence"]["state"] == "down", "long gone: no live instance"
    assert services["auth"]["state"] == "down", "never seen"
    states = {b["instance"]: b["state"] for b in view["instances"]}
    assert states == {"g1": "healthy", "t1": "healthy", "t2": "down", "a1": "degraded"}


def test_delivery_figures_add_up_over_live_gateways() -> None:
    first, second, dead = LatencyWindows(), LatencyWindows(), LatencyWindows()
    both = LatencyWindows()
    for n, target in enumerate([first, second] * 50):
        seconds = 0.002 * (n + 1)
        target.observe(seconds, NOW)
        both.observe(seconds, NOW)
    dead.observe(9.0, NOW)

    def gateway(name: str, windows: LatencyWindows, sent: int, *, alive: bool = True) -> dict[str, Any]:
        details: dict[str, Any] = {c: sent for c in DELIVERY_COUNTERS}
        details[latency_detail(300)] = encode(windows.counts(300, NOW))
        return beat("gateway", name, alive=alive, details=details)

    view = delivery_view(
        [
            gateway("g1", first, 10),
            gateway("g2", second, 5),
            gateway("g3", dead, 1000, alive=False),
            beat("tools", "t1"),
        ]
    )
    assert view["totals"] == dict.fromkeys(DELIVERY_COUNTERS, 15)
    five_min = next(w for w in view["latency"] if w["window_s"] == 300)
    merged = both.counts(300, NOW)
    assert five_min["count"] == 100
    assert (five_min["p50"], five_min["p95"], five_min["p99"]) == tuple(
        quantile_ms(merged, q) for q in (0.5, 0.95, 0.99)
    )


def test_projector_lag_comes_from_the_freshest_live_persistence_beat() -> None:
    lag = projector_lag(
        [
            beat("persistence", "old", age_s=5, details={"lag_postgres": 90, "checkpoint_postgres": 10}),
            beat(
                "persistence",
                "new",
                age_s=1,
                details={"lag_postgres": 3, "checkpoint_postgres": 97},
                breakers={"postgres": "closed"},
            ),
            beat("persistence", "dead", alive=False, age_s=0.5, details={"lag_postgres": 1000}),
        ]
    )
    assert lag == [{"store": "postgres", "lag": 3, "checkpoint": 97, "breaker": "closed", "instance": "new"}]


def test_a_gateway_heartbeat_carries_its_delivery_figures() -> None:
    registry = CollectorRegistry()
    metrics = SimpleNamespace(
        delivery_windows=LatencyWindows(),
        **{name: Counter(f"test_{name}", name, registry=registry) for name in DELIVERY_COUNTERS},
    )
    metrics.events_sent.inc(7)
    metrics.events_acked.inc(5)
    health = Health("gateway", "g1")
    publish_delivery_figures(health, metrics)  # type: ignore[arg-type]
    details = health.current_details()
    assert (details["events_sent"], details["events_acked"], details["events_resent"]) == (7, 5, 0)
    assert decode(str(details[latency_detail(3600)])) == [0] * (len(BOUNDS_S) + 1)
