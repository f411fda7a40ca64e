"""``RunSlotsContract`` run against the store the orchestrator uses: the JetStream
key-value bucket ``apex_user_runs`` on a real NATS server (one store per replica, over one connection)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from apex_contracts.streams import KV_USER_RUNS
from apex_orchestrator.admission import UserSlots
from apex_runtime import Bus, CircuitBreaker
from tests.integration.orchestrator.run_slots_contract import RunSlotsContract, SlotStores


class TestKvRunSlots(RunSlotsContract):
    @pytest.fixture
    async def slot_stores(self, nats: Any) -> AsyncIterator[SlotStores]:
        bus = await Bus.connect(nats.url, "run-slots-contract-test")
        await bus.ensure_topology()
        kv = await bus.bucket(KV_USER_RUNS)
        yield lambda: UserSlots(kv, CircuitBreaker("user_runs_kv"))
        await bus.close()
