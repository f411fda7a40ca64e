"""What a FastStream handler pays to be handed its message: faststream's own
``NatsMessage`` (its context field resolved in a worker thread) against
``apex_runtime.InboundMessage`` (resolved on the loop), alternated, on a private
nats-server, uvloop. Process CPU per message published and handled; by hand:

    .venv/bin/python -m bench.handler_overhead
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop
from faststream.nats import NatsBroker, NatsMessage

from apex_cli.embedded import nats_server
from apex_runtime import InboundMessage

MESSAGES = 3000
ROUNDS = 4


async def _cpu_per_message(url: str, annotation: Any) -> float:
    broker = NatsBroker(url, log_level=logging.DEBUG, logger=logging.getLogger("bench.quiet"))
    handled = 0
    all_handled = asyncio.Event()

    async def handler(body: dict[str, Any], msg: Any) -> None:
        nonlocal handled
        handled += 1
        if handled == MESSAGES:
            all_handled.set()

    handler.__annotations__["msg"] = annotation
    broker.subscriber("bench.handler")(handler)
    async with broker:
        await broker.start()
        payload = {"run_id": "run", "step": 1, "text": "x" * 200}
        started = time.process_time()
        for n in range(MESSAGES):
            await broker.publish(payload, "bench.handler")
            if n % 50 == 0:
                await asyncio.sleep(0)  # let the handlers keep up
        await asyncio.wait_for(all_handled.wait(), 120)
        return (time.process_time() - started) / MESSAGES * 1e6


async def measure(url: str) -> dict[str, list[float]]:
    rounds: dict[str, list[float]] = {"NatsMessage": [], "InboundMessage": []}
    for _ in range(ROUNDS):
        rounds["NatsMessage"].append(await _cpu_per_message(url, NatsMessage))
        rounds["InboundMessage"].append(await _cpu_per_message(url, InboundMessage))
    return rounds


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="apex-bench-handler-") as folder:
        server = nats_server(Path(folder) / "nats").start()
        try:
            rounds = uvloop.run(measure(server.url))
        finally:
            server.stop()
    medians = {name: statistics.median(values) for name, values in rounds.items()}
    for name, values in rounds.items():
        print(
            f"{name}: {medians[name]:.0f} µs CPU per message (rounds {', '.join(f'{v:.0f}' for v in values)})"
        )
    print(f"InboundMessage / NatsMessage: {medians['InboundMessage'] / medians['NatsMessage']:.2f}")


if __name__ == "__main__":
    main()
