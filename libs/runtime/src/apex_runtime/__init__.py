"""What every Apex service runs on: settings, the bus, consumers, health, logs, traces."""

from apex_runtime.breaker import CircuitBreaker, CircuitOpen
from apex_runtime.bus import NatsBus, connect_nats, nats_servers
from apex_runtime.consumers import keep_alive, poison_guard, subscribe_command
from apex_runtime.host import ServiceHost
from apex_runtime.inbound import InboundMessage, undecoded
from apex_runtime.logs import configure_logging, log_context
from apex_runtime.ops import Health, heartbeat_loop, ops_app, ops_routes, run_process, serve_http
from apex_runtime.port import (
    Bus,
    ConsumerState,
    KvBucket,
    KvEntry,
    Notice,
    PullConsumer,
    Pulled,
    Stored,
    StreamState,
    Subscription,
    WrongRevision,
)
from apex_runtime.settings import NatsCredentialsRequired, ServiceSettings
from apex_runtime.topology import TRANSIENT_NATS_ERRORS
from apex_runtime.tracing import Tracing, configure_tracing
from apex_runtime.watch import SubjectWatch, WatchPool

__all__ = [
    "TRANSIENT_NATS_ERRORS",
    "Bus",
    "ConsumerState",
    "InboundMessage",
    "KvBucket",
    "KvEntry",
    "NatsBus",
    "NatsCredentialsRequired",
    "Notice",
    "PullConsumer",
    "Pulled",
    "Stored",
    "StreamState",
    "Subscription",
    "WrongRevision",
    "CircuitBreaker",
    "CircuitOpen",
    "Health",
    "ServiceHost",
    "ServiceSettings",
    "SubjectWatch",
    "WatchPool",
    "Tracing",
    "configure_logging",
    "configure_tracing",
    "connect_nats",
    "heartbeat_loop",
    "keep_alive",
    "log_context",
    "nats_servers",
    "ops_app",
    "ops_routes",
    "poison_guard",
    "run_process",
    "serve_http",
    "subscribe_command",
    "undecoded",
]
