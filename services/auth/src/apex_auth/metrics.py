"""Prometheus metrics of the auth service (served on ``/metrics``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LOGINS = Counter(
    "apex_auth_logins_total",
    "Login attempts by outcome (success, failure, unknown_account, throttled)",
    ["outcome"],
)
REGISTRATIONS = Counter("apex_auth_registrations_total", "Registrations by outcome", ["outcome"])
REFRESHES = Counter(
    "apex_auth_refreshes_total", "Refresh attempts by outcome (success, invalid, reused)", ["outcome"]
)
THROTTLED = Counter(
    "apex_auth_throttled_total", "Requests refused by throttling, by the limit that fired", ["limit"]
)
SESSIONS_REVOKED = Counter("apex_auth_sessions_revoked_total", "Sessions revoked, by reason", ["reason"])
REVOCATION_BROADCAST_FAILURES = Counter(
    "apex_auth_revocation_broadcast_failures_total",
    "Revocations whose NATS broadcast failed (Redis still holds them)",
)
TOKENS_ISSUED = Counter("apex_auth_access_tokens_issued_total", "Access tokens minted")
TOKENS_REJECTED = Counter(
    "apex_auth_access_tokens_rejected_total", "Bearer tokens refused, by error code", ["code"]
)
KEY_ROTATIONS = Counter("apex_auth_key_rotations_total", "Signing key rotations")
AUDIT_RECORDED = Counter(
    "apex_auth_audit_recorded_total", "Audit facts written to the outbox", ["action", "outcome"]
)
AUDIT_PUBLISHED = Counter("apex_auth_audit_published_total", "Audit facts acknowledged by JetStream")
AUDIT_RELAY_FAILURES = Counter(
    "apex_auth_audit_relay_failures_total", "Relay rounds that failed and were retried"
)
PASSWORD_SECONDS = Histogram(
    "apex_auth_password_hash_seconds",
    "Time spent hashing or verifying a password",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
PASSWORD_SLOTS_IN_USE = Gauge(
    "apex_auth_password_slots_in_use", "Argon2 checks running now (at most the configured slots)"
)
PASSWORD_BUSY = Counter(
    "apex_auth_password_busy_total", "Requests answered auth_busy: no hashing slot freed up in time"
)
