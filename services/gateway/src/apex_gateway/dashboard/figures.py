"""What the dashboard shows, computed from heartbeats (pure functions over
``ServiceDirectory.instances()``), and the delivery figures each gateway adds to its own
heartbeat so that any gateway can show the sum of all of them."""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable
from typing import Any

from prometheus_client import Counter

from apex_contracts.health import SERVICES
from apex_contracts.queries import SLA_DEFAULT_WINDOWS_S
from apex_gateway.latency import decode, encode, quantile_ms
from apex_gateway.metrics import GatewayMetrics
from apex_runtime import Health

DELIVERY_COUNTERS = ("events_sent", "events_acked", "events_resent", "events_replayed")
# A dead instance stays listed (as down) this long after its last heartbeat, then it is
# forgotten: replicas are replaced by new instances, not revived under the same name.
DOWN_SHOWN_S = 600.0
Instance = dict[str, Any]


def counter_total(counter: Counter) -> int:
    """A counter's value through the public collector API (no labels: one sample)."""
    return int(sum(s.value for m in counter.collect() for s in m.samples if s.name.endswith("_total")))


def latency_detail(window_s: int) -> str:
    return f"delivery_latency_{window_s}s"


def publish_delivery_figures(health: Health, metrics: GatewayMetrics) -> None:
    """Adds the gateway's delivery counters and latency bucket counts to its heartbeat."""
    for name in DELIVERY_COUNTERS:
        counter = getattr(metrics, name)
        health.add_probe(name, functools.partial(counter_total, counter))
    for window in SLA_DEFAULT_WINDOWS_S:
        health.add_probe(latency_detail(window), functools.partial(_window_counts, metrics, window))


def _window_counts(metrics: GatewayMetrics, window_s: int) -> str:
    """The delivery latency bucket counts over the last ``window_s``, as heartbeat detail."""
    return encode(metrics.delivery_windows.counts(window_s, time.time()))


def instance_state(beat: Instance) -> str:
    if not beat.get("alive"):
        return "down"
    if beat.get("status") == "stopping":
        return "stopping"
    if not beat.get("ready"):
        return "not_ready"
    if beat.get("status") == "degraded":
        return "degraded"
    return "healthy"


def services_view(instances: Iterable[Instance], expected: Iterable[str] = SERVICES) -> dict[str, Any]:
    """Every service with its state (from its live instances) and every instance still
    worth showing. A service with no live instance is ``down``."""
    shown = [
        {**beat, "state": instance_state(beat)}
        for beat in instances
        if beat.get("alive") or beat.get("age_s", 0) < DOWN_SHOWN_S
    ]
    names = list(dict.fromkeys([*expected, *(b["service"] for b in shown)]))
    rows = []
    for name in names:
        mine = [b for b in shown if b["service"] == name]
        live = [b for b in mine if b["state"] != "down"]
        healthy = [b for b in live if b["state"] == "healthy"]
        state = "down" if not live else ("healthy" if len(healthy) == len(live) else "degraded")
        rows.append(
            {
                "service": name,
                "state": state,
                "up": len(healthy),
                "live": len(live),
                "down": len(mine) - len(live),
            }
        )
    return {"services": rows, "instances": shown, "at": time.time()}


def projector_lag(instances: Iterable[Instance]) -> list[dict[str, Any]]:
    """Each projector's lag (events behind the stream) from the freshest live
    persistence heartbeat: every replica reads the same checkpoints."""
    live = sorted(
        (b for b in instances if b.get("service") == "persistence" and b.get("alive")),
        key=lambda b: b.get("age_s", 0),
    )
    if not live:
        return []
    details = live[0].get("details", {})
    stores = sorted(k.removeprefix("lag_") for k in details if k.startswith("lag_"))
    return [
        {
            "store": store,
            "lag": details.get(f"lag_{store}"),
            "checkpoint": details.get(f"checkpoint_{store}"),
            "breaker": live[0].get("breakers", {}).get(store),
            "instance": live[0]["instance"],
        }
        for store in stores
    ]


def delivery_view(instances: Iterable[Instance]) -> dict[str, Any]:
    """Sent, acked, re-sent and replayed frames summed over the live gateways (each
    counts since it started), and delivery latency percentiles of their merged histograms."""
    gateways = [b for b in instances if b.get("service") == "gateway" and b.get("alive")]
    per_gateway = [
        {
            "instance": b["instance"],
            **{name: int(b.get("details", {}).get(name, 0)) for name in DELIVERY_COUNTERS},
        }
        for b in gateways
    ]
    totals = {name: sum(g[name] for g in per_gateway) for name in DELIVERY_COUNTERS}
    latency = []
    for window in SLA_DEFAULT_WINDOWS_S:
        merged: list[int] | None = None
        for beat in gateways:
            counts = decode(str(beat.get("details", {}).get(latency_detail(window), "")))
            if counts is not None:
                merged = counts if merged is None else [a + b for a, b in zip(merged, counts, strict=True)]
        merged = merged or []
        latency.append(
            {
                "window_s": window,
                "count": sum(merged),
                **{f"p{q}": quantile_ms(merged, q / 100) for q in (50, 95, 99)},
            }
        )
    return {"totals": totals, "gateways": per_gateway, "latency": latency}
