"""``apex demo seed``: a demo tenant with realistic usage, uploaded like any user would."""

from __future__ import annotations

import sys

import orjson

from apex_cli.config import Home, auth_url, gateway_url
from apex_cli.demo_data import generate
from apex_client import ApexHttp
from apex_contracts import ApexError


async def run_seed(home: Home, email: str, password: str, days: int) -> int:
    rows = list(generate(days))
    body = b"\n".join(orjson.dumps(r) for r in rows)
    async with ApexHttp(auth_url(home), gateway_url(home), timeout=300) as http:
        try:
            await http.login_or_register(email, password, "Demo Company")
            result = await http.api("POST", "/api/v1/usage", content=body,
                                    headers={"Content-Type": "application/x-ndjson"})
        except ApexError as exc:
            print(f"error: {exc.message}", file=sys.stderr)
            return 1
    print(f"Seeded {result['accepted']} usage records over {days} days for {email} "
          f"(password {password}); {len(result['rejected'])} rejected.")
    print("Log in as that user and ask: where is my LLM spend going and how do I cut it?")
    return 0
