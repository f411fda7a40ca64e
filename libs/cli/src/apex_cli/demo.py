"""``apex demo seed``: a demo tenant with realistic usage, uploaded like any user would,
then the tenant's summary once the records are stored."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import orjson

from apex_cli.config import Home, auth_url, gateway_url
from apex_cli.demo_data import generate
from apex_client import ApexHttp
from apex_contracts import ApexError

STORED_WAIT_S = 60.0


async def run_seed(home: Home, email: str, password: str, days: int) -> int:
    rows = list(generate(days))
    body = b"\n".join(orjson.dumps(r) for r in rows)
    async with ApexHttp(auth_url(home), gateway_url(home), timeout=300) as http:
        try:
            await http.login_or_register(email, password, "Demo Company")
            result = await http.api(
                "POST", "/api/v1/usage", content=body, headers={"Content-Type": "application/x-ndjson"}
            )
            summary = await _stored(http, result["accepted"] + result["duplicates"])
        except ApexError as exc:
            print(f"error: {exc.message}", file=sys.stderr)
            return 1
    print(
        f"Seeded {result['accepted']:,} usage records over {days} days for {email} (password {password}); "
        f"{result['duplicates']:,} were already there, {result['rejected_total']} rejected."
    )
    print(
        f"The demo tenant has {summary.get('requests', 0):,} calls costing ${summary.get('total_cost_usd', 0):,.2f}."
    )
    print("Log in as that user and ask: where is my LLM spend going and how do I cut it?")
    return 0


async def _stored(http: ApexHttp, rows: int) -> dict[str, Any]:
    """The usage summary once every uploaded record is stored (ingest is asynchronous)."""
    deadline = time.monotonic() + STORED_WAIT_S
    while True:
        summary: dict[str, Any] = await http.api("GET", "/api/v1/usage/summary")
        if summary.get("requests", 0) >= rows or time.monotonic() > deadline:
            return summary
        await asyncio.sleep(0.5)
