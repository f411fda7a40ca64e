"""OTLP protobuf ingest rate through the real platform: GenAI spans exported the way the
OpenTelemetry SDK's OTLP/HTTP exporter sends them (protobuf, 512 spans per export, a few
exporters at once) into a platform started with ``apex up`` on free ports in a
temporary folder.

Prints rows/s until every export was answered (each span read, mapped, checked for
duplicates and committed) and rows/s until every row was stored in ClickHouse
``llm_usage`` (the usage summary counts them all), through the gateway's ``/v1/traces``
and straight to the ingest service's port.

Run by hand: ``.venv/bin/python -m bench.ingest_otlp [--spans N] [--exporters K]``.
Never part of ``make test``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import httpx

from bench.common import running_platform
from tests.e2e.platform import Platform
from tests.integration.ingest.otlp_builders import export, span

SPANS_PER_EXPORT = 512  # the SDK's BatchSpanProcessor default batch


def exports(total: int, tag: int) -> list[bytes]:
    bodies = []
    for first in range(0, total, SPANS_PER_EXPORT):
        spans = [
            span(
                tag * 10_000_000 + n,
                {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": "gpt-4o-mini",
                    "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
                    "gen_ai.response.id": f"chatcmpl-bench-{tag}-{n}",
                    "gen_ai.usage.input_tokens": 1000 + n % 5000,
                    "gen_ai.usage.output_tokens": 50 + n % 700,
                    "gen_ai.usage.cache_read.input_tokens": 512 if n % 3 == 0 else 0,
                    "openai.response.service_tier": "default",
                },
            )
            for n in range(first, min(first + SPANS_PER_EXPORT, total))
        ]
        bodies.append(export(spans, service=f"bench-{first // SPANS_PER_EXPORT % 7}").SerializeToString())
    return bodies


async def run(
    platform: Platform, url: str, bodies: list[bytes], spans: int, exporters: int
) -> dict[str, Any]:
    user = platform.register()
    headers = {"Authorization": f"Bearer {user.access_token}", "Content-Type": "application/x-protobuf"}
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)

    async def exporter(http: httpx.AsyncClient) -> None:
        while not queue.empty():
            body = queue.get_nowait()
            (await http.post(f"{url}/v1/traces", content=body, headers=headers)).raise_for_status()

    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=300) as http:
        await asyncio.gather(*(exporter(http) for _ in range(exporters)))
        answered = time.perf_counter() - started
        while True:
            summary = (await http.get(f"{platform.gateway}/api/v1/usage/summary", headers=headers)).json()
            if summary.get("requests", 0) >= spans:
                break
            await asyncio.sleep(0.25)
    stored = time.perf_counter() - started
    return {
        "answered_rows_s": spans / answered,
        "stored_rows_s": spans / stored,
        "answered_s": answered,
        "stored_s": stored,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spans", type=int, default=100_000)
    parser.add_argument("--exporters", type=int, default=4)
    args = parser.parse_args()
    with running_platform() as platform:
        ingest = f"http://127.0.0.1:{platform.recorded_env()['APEX_INGEST_PORT']}"
        for number, (name, url) in enumerate(
            (("gateway /v1/traces", platform.gateway), ("ingest /v1/traces", ingest))
        ):
            built = time.perf_counter()
            bodies = exports(args.spans, number + 1)
            size = sum(len(b) for b in bodies)
            print(
                f"built {len(bodies)} exports, {size / 1e6:.0f} MB, in {time.perf_counter() - built:.1f} s",
                flush=True,
            )
            figures = asyncio.run(run(platform, url, bodies, args.spans, args.exporters))
            print(
                f"{name}: {args.spans:,} spans, {args.exporters} exporters: answered in {figures['answered_s']:.1f} s "
                f"({figures['answered_rows_s']:,.0f} rows/s); all stored in ClickHouse after {figures['stored_s']:.1f} s "
                f"({figures['stored_rows_s']:,.0f} rows/s end to end)",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
