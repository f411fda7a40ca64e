"""``Bus.publish`` counts what operators watch while NATS nodes come and go: attempts that
met a transient error and were tried again, publishes stored, and publishes that failed
after every retry (the sender got ``publish_failed``)."""

from __future__ import annotations

from typing import Any

import nats.errors
import pytest
from prometheus_client import REGISTRY

from apex_contracts import ErrorCode, Unavailable
from apex_runtime.bus import NatsBus


class _Ack:
    seq = 7


class _JetStream:
    def __init__(self, failures: int) -> None:
        self.failures = failures

    async def publish(self, *_args: Any, **_kwargs: Any) -> _Ack:
        if self.failures:
            self.failures -= 1
            raise nats.errors.NoRespondersError
        return _Ack()


class _Nats:
    def __init__(self, failures: int) -> None:
        self.js = _JetStream(failures)

    def jetstream(self) -> _JetStream:
        return self.js


class _Message:
    id = "evt_1"
    type = "run.accepted"

    def wire(self) -> bytes:
        return b"{}"


def _count(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _figures() -> tuple[float, float, float]:
    return (
        _count("apex_bus_publishes_total", outcome="stored"),
        _count("apex_bus_publishes_total", outcome="failed"),
        _count("apex_bus_publish_retries_total"),
    )


async def test_a_publish_retried_then_stored_counts_its_retries() -> None:
    bus = NatsBus(_Nats(failures=2), publish_retry_s=5.0)  # type: ignore[arg-type]
    before = _figures()
    assert await bus.publish(_Message(), "apex.evt.x") == 7  # type: ignore[arg-type]
    after = _figures()
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 0, 2]


async def test_a_publish_that_fails_every_attempt_is_counted_failed() -> None:
    bus = NatsBus(_Nats(failures=10_000), publish_retry_s=0.3)  # type: ignore[arg-type]
    before = _figures()
    with pytest.raises(Unavailable) as failed:
        await bus.publish(_Message(), "apex.evt.x")  # type: ignore[arg-type]
    assert failed.value.code == ErrorCode.PUBLISH_FAILED
    stored, failed_, retried = (a - b for a, b in zip(_figures(), before, strict=True))
    assert (stored, failed_) == (0, 1)
    assert retried >= 1  # as many as fit in publish_retry_s


def test_both_outcomes_exist_before_any_publish() -> None:
    """An alert on failed publishes sees 0, not a missing series."""
    assert REGISTRY.get_sample_value("apex_bus_publishes_total", {"outcome": "failed"}) is not None
