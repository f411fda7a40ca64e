"""``LedgerContract`` run against the ledger the tools service uses: the JetStream
key-value bucket ``apex_tool_ledger`` on a real NATS server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from apex_contracts.streams import KV_TOOL_LEDGER
from apex_runtime import Bus
from apex_tools.ledger import KvLedger, Ledger
from tests.integration.tools.ledger_contract import LedgerContract


class TestKvLedger(LedgerContract):
    @pytest.fixture
    async def tool_ledger(self, nats: Any) -> AsyncIterator[Ledger]:
        bus = await Bus.connect(nats.url, "ledger-contract-test")
        await bus.ensure_topology()
        yield KvLedger(await bus.bucket(KV_TOOL_LEDGER))
        await bus.close()
