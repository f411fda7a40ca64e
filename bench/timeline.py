"""Where a golden-path run spends its time, seen from the client: every event of a run
with the milliseconds since `message.send` at which it arrived.

``python -m bench.timeline [--runs N]`` (a profiling aid, not part of `make bench`)."""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from datetime import datetime

import orjson

from apex_contracts import TERMINAL
from bench.common import running_platform
from bench.golden import QUESTION, open_ws


async def timeline(runs: int) -> None:
    with running_platform(APEX_MAX_RUNS_PER_USER="1000") as platform:
        user = platform.register()
        ws = await open_ws(platform, user)
        for _ in range(runs):
            started = time.perf_counter()
            await ws.send(
                orjson.dumps(
                    {"type": "message.send", "client_msg_id": uuid.uuid4().hex, "text": QUESTION}
                ).decode()
            )
            previous = 0.0
            lines = []
            while True:
                frame = orjson.loads(await ws.recv())
                at = (time.perf_counter() - started) * 1000
                kind, written = frame["type"], ""
                if kind == "event":
                    event = frame["event"]
                    kind = f"{event['type']} {event.get('agent') or ''} {event['data'].get('tool') or ''}"
                    occurred = datetime.fromisoformat(event["occurred_at"]).timestamp()
                    # how long before its arrival the event was written (same host clock)
                    written = f"written {(time.time() - occurred) * 1000:5.1f} ms before"
                lines.append(f"{at:8.1f} ms  +{at - previous:6.1f}  {kind:45} {written}")
                previous = at
                if frame["type"] == "event" and frame["event"]["type"] in TERMINAL:
                    break
            print("\n".join(lines), "\n")
        await ws.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.timeline")
    parser.add_argument("--runs", type=int, default=3)
    asyncio.run(timeline(parser.parse_args().runs))


if __name__ == "__main__":
    main()
