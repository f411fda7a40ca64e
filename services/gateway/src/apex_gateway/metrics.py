"""The gateway's Prometheus metrics (``apex_gateway_*``)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from prometheus_client import Counter, Gauge, Histogram

from apex_gateway.latency import BOUNDS_S, LatencyWindows


@dataclass
class GatewayMetrics:
    connections: Gauge = field(
        default_factory=lambda: Gauge("apex_gateway_connections", "Open WebSocket connections")
    )
    connects: Counter = field(
        default_factory=lambda: Counter(
            "apex_gateway_connects_total", "WebSocket handshakes by outcome", ["outcome"]
        )
    )
    closes: Counter = field(
        default_factory=lambda: Counter(
            "apex_gateway_closes_total", "Connections closed by close code", ["code"]
        )
    )
    events_sent: Counter = field(
        default_factory=lambda: Counter("apex_gateway_events_sent_total", "Event frames sent to clients")
    )
    events_replayed: Counter = field(
        default_factory=lambda: Counter(
            "apex_gateway_events_replayed_total", "Event frames sent as replay (not live)"
        )
    )
    events_resent: Counter = field(
        default_factory=lambda: Counter(
            "apex_gateway_events_resent_total", "Event frames sent again after an ack timeout"
        )
    )
    resyncs: Counter = field(
        default_factory=lambda: Counter(
            "apex_gateway_resyncs_total", "Subscriptions ended with resync_required"
        )
    )
    events_acked: Counter = field(
        default_factory=lambda: Counter("apex_gateway_events_acked_total", "Cumulative acks received")
    )
    frames_in: Counter = field(
        default_factory=lambda: Counter(
            "apex_gateway_frames_in_total", "Client frames received by type", ["type"]
        )
    )
    errors: Counter = field(
        default_factory=lambda: Counter(
            "apex_gateway_errors_total", "Errors answered to clients by code", ["code"]
        )
    )
    ack_latency: Histogram = field(
        default_factory=lambda: Histogram(
            "apex_gateway_ack_latency_seconds",
            "From sending an event frame to its cumulative ack",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
    )
    http_latency: Histogram = field(
        default_factory=lambda: Histogram("apex_gateway_http_seconds", "HTTP API latency", ["route"])
    )
    delivery_latency: Histogram = field(
        default_factory=lambda: Histogram(
            "apex_gateway_delivery_latency_seconds",
            "From an event's occurred_at to its live frame written to the client's socket",
            buckets=BOUNDS_S,
        )
    )
    cursors_flushed: Counter = field(
        default_factory=lambda: Counter(
            "apex_gateway_cursors_flushed_total", "Delivery cursors stored in persistence by a flush"
        )
    )
    cursor_flush_failures: Counter = field(
        default_factory=lambda: Counter(
            "apex_gateway_cursor_flush_failures_total",
            "Cursor flush requests that failed, by error code (their cursors are kept and retried)",
            ["code"],
        )
    )
    cursors_unflushed: Gauge = field(
        default_factory=lambda: Gauge(
            "apex_gateway_cursors_unflushed", "Delivery cursors advanced since their last flush"
        )
    )
    cursor_restores: Counter = field(
        default_factory=lambda: Counter(
            "apex_gateway_cursor_restores_total",
            "Cursors missing from Redis asked of persistence, by outcome (found, none, unavailable)",
            ["outcome"],
        )
    )
    frames_discarded: Counter = field(
        default_factory=lambda: Counter(
            "apex_gateway_frames_discarded_total",
            "Client frames not answered, by reason (rate_limited: the rest of a window already answered once)",
            ["reason"],
        )
    )
    server_closes: Counter = field(
        default_factory=lambda: Counter(
            "apex_gateway_server_closes_total",
            "Connections the gateway ended, by reason (slow_consumer, token_expired, session_revoked, ...)",
            ["reason"],
        )
    )
    shared_limits_up: Gauge = field(
        default_factory=lambda: Gauge(
            "apex_gateway_shared_limits_up",
            "1 while the per-user limits are counted in Redis across gateways, 0 while per process",
        )
    )
    shared_limits_degraded: Counter = field(
        default_factory=lambda: Counter(
            "apex_gateway_shared_limits_degraded_total",
            "Per-user limit decisions taken on this process's own counts (Redis did not answer)",
            ["limit"],
        )
    )
    revocation_checks: Counter = field(
        default_factory=lambda: Counter(
            "apex_gateway_revocation_checks_total",
            "Re-checks of the open sockets' sessions against the revocation set, by outcome",
            ["outcome"],
        )
    )
    long_polls: Counter = field(
        default_factory=lambda: Counter(
            "apex_gateway_long_polls_total",
            "Long-poll requests on the events endpoint, by outcome (events, timeout)",
            ["outcome"],
        )
    )
    delivery_windows: LatencyWindows = field(default_factory=LatencyWindows)

    def observe_delivery(self, seconds: float) -> None:
        """One live event frame written to a socket ``seconds`` after it occurred."""
        self.delivery_latency.observe(max(seconds, 0.0))
        self.delivery_windows.observe(seconds, time.time())

    # --- ws.ports.DeliveryFigures: what a thread subscription counts ---------------------

    def replayed(self, count: int = 1) -> None:
        self.events_replayed.inc(count)

    def resent(self) -> None:
        self.events_resent.inc()

    def resynced(self) -> None:
        self.resyncs.inc()

    def ack_waited(self, seconds: float) -> None:
        self.ack_latency.observe(seconds)
