"""The analyst over the whole platform (``apex up``): a user uploads usage data through
the gateway and asks in a chat; the report's figures are the data's own, computed here
independently (money to the cent), every recommendation cites tool calls of that run,
and the text states the report's figures, each bound to a tool call of the run and a field of its result.
Also: idempotent re-uploads, bad uploads, OTLP traces, price overrides, an empty tenant
and a data set without latency."""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson

from apex_agents.analyst.figures import unsupported
from tests.e2e.platform import Platform, User
from tests.e2e.wsclient import open_socket, recv, send, until_terminal
from tests.integration.agents.bound import assert_bound, figures_of
from tests.integration.tools import analyst_dataset as ds


async def chat(platform: Platform, user: User, text: str) -> list[dict[str, Any]]:
    """The run's events, in order, as the client saw them."""
    ws = await open_socket(platform.ws_url, user.access_token)
    assert (await recv(ws))["type"] == "session.ready"
    await send(ws, {"type": "message.send", "client_msg_id": uuid.uuid4().hex, "text": text})
    accepted = await recv(ws)
    frames = await until_terminal(ws, accepted["run_id"], timeout=110)
    await ws.close()
    return [
        f["event"] for f in frames if f["type"] == "event" and f["event"].get("run_id") == accepted["run_id"]
    ]


def stored(platform: Platform, user: User, rows: int, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        summary: dict[str, Any] = platform.api(user, "GET", "/api/v1/usage/summary").json()
        if summary.get("requests", 0) >= rows or time.monotonic() > deadline:
            return summary
        time.sleep(0.3)


def money(value: float) -> str:
    return f"${value:,.2f}"


async def test_a_chat_on_uploaded_data_reports_its_own_figures(platform: Platform) -> None:
    user = platform.register()
    rows = ds.rows()
    first = platform.upload(user, rows)
    again = platform.upload(user, rows)  # at once: the first is committed, maybe not stored yet
    assert (first["accepted"], first["duplicates"], first["rejected"]) == (len(rows), 0, [])
    assert (again["accepted"], again["duplicates"]) == (0, len(rows)), "read-your-writes, by request_id"
    assert stored(platform, user, len(rows))["requests"] == len(rows)

    events = await chat(platform, user, "Where is my LLM spend going and how do I cut it?")
    final = events[-1]
    assert final["type"] == "run.completed" and final["data"]["status"] == "completed"
    report = final["data"]["response"]["report"]
    assert report["requests"] == len(rows)
    assert report["total_cost_usd"] == ds.cents(sum(ds.cost(r) for r in rows))
    for model in report["by_model"]:
        mine = [r for r in rows if r["model"] == model["model"]]
        assert model["cost_usd"] == ds.cents(sum(ds.cost(r) for r in mine)), model["model"]
        assert model["p95_latency_ms"] == round(ds.pct([r["latency_ms"] for r in mine], 95))

    completed = [e for e in events if e["type"] == "tool_completed"]
    calls = {e["data"]["call_id"] for e in completed}
    assert len(report["recommendations"]) >= 4
    for rec in report["recommendations"]:
        assert rec["evidence"] and set(rec["evidence"]) <= calls, rec["title"]
    batch = next(
        r for r in report["recommendations"] if r["kind"] == "batch_api" and "nightly-report" in r["title"]
    )
    nightly = [r for r in rows if r["workload"] == "nightly-report"]
    assert batch["est_monthly_savings_usd"] == ds.cents(
        ds.monthly(sum(ds.cost(r) for r in nightly) * 0.5, ds.span_days(rows))
    )

    text = final["data"]["response"]["text"]
    assert unsupported(text, figures_of(report)) == []
    assert_bound(report, completed)
    assert money(report["total_cost_usd"]) in text
    for rec in report["recommendations"]:
        assert money(rec["est_monthly_savings_usd"]) in text


async def test_an_empty_tenant_gets_needs_data_with_a_data_request(platform: Platform) -> None:
    user = platform.register()
    final = (await chat(platform, user, "How can I cut my LLM costs?"))[-1]
    assert final["data"]["status"] == "needs_data"
    request = final["data"]["response"]["data_request"]
    assert {"ts", "model", "prompt_tokens", "completion_tokens"} <= set(request["fields"])
    assert len(request["how_to_export"]) >= 5 and request["formats"]


async def test_data_without_latency_gets_a_partial_report_naming_the_gap(platform: Platform) -> None:
    user = platform.register()
    rows = [r for r in ds.rows(latency=False, days=10) if r["provider"] != "acme"]
    body = "ts,provider,model,workload,prompt_tokens,completion_tokens,status,request_id\n" + "".join(
        f"{r['ts']},{r['provider']},{r['model']},{r['workload']},{r['prompt_tokens']},{r['completion_tokens']},"
        f"{r['status']},{r['request_id']}\n"
        for r in rows
    )
    answer = platform.api(
        user, "POST", "/api/v1/usage", content=body.encode(), headers={"Content-Type": "text/csv"}
    ).json()
    assert answer["accepted"] == len(rows)
    stored(platform, user, len(rows))
    final = (await chat(platform, user, "Where does my LLM money go?"))[-1]
    response = final["data"]["response"]
    assert response["kind"] == "partial"
    assert any("latency_ms" in gap for gap in response["report"]["data_gaps"])
    assert "latency_ms" in response["data_request"]["fields"]
    assert response["report"]["total_cost_usd"] == ds.cents(
        sum(ds.cost({**r, "cached_tokens": 0}) for r in rows)
    )


def test_bad_uploads_are_named_line_by_line(platform: Platform) -> None:
    user = platform.register()
    good = {
        "ts": "2026-01-05T10:00:00Z",
        "provider": "openai",
        "model": "gpt-4o",
        "prompt_tokens": 10,
        "completion_tokens": 5,
    }
    lines = [
        good,
        {**good, "prompt_tokens": "ten"},
        {**good, "completion_tokens": -5},
        {**good, "status": "meh"},
        {**good, "ts": "05/01/2026"},
    ]
    body = b"\n".join(orjson.dumps(x) for x in lines) + b"\n\xff\xfe garbage\n"
    answer = platform.api(
        user, "POST", "/api/v1/usage", content=body, headers={"Content-Type": "application/x-ndjson"}
    ).json()
    assert answer["accepted"] == 1
    assert [(r["line"], r["error"].split(":")[0]) for r in answer["rejected"]] == [
        (2, "prompt_tokens"),
        (3, "completion_tokens"),
        (4, "status"),
        (5, "ts"),
        (6, "not UTF-8 text"),
    ]

    missing = platform.api(
        user,
        "POST",
        "/api/v1/usage",
        content=b"ts,model\n2026-01-05T10:00:00Z,gpt-4o\n",
        headers={"Content-Type": "text/csv"},
    )
    assert missing.status_code == 422
    error = missing.json()["error"]
    assert error["code"] == "invalid_request" and "provider" in error["message"]
    assert error["details"]["missing_columns"] == ["provider", "prompt_tokens", "completion_tokens"]


def test_a_50_mb_upload_streams_through_and_counts_duplicates_truthfully(platform: Platform) -> None:
    user = platform.register()
    line = (
        orjson.dumps(
            {
                "ts": "2026-01-05T10:00:00Z",
                "provider": "openai",
                "model": "gpt-4o",
                "prompt_tokens": 10,
                "completion_tokens": 5,
                "workload": "w" * 120,
                "prompt_hash": "h" * 120,
                "request_id": "the-same-call",
            }
        )
        + b"\n"
    )
    count = 50 * 1024 * 1024 // len(line) + 1
    answer = platform.api(
        user, "POST", "/api/v1/usage", content=line * count, headers={"Content-Type": "application/x-ndjson"}
    ).json()
    assert (answer["accepted"], answer["duplicates"], answer["rejected_total"]) == (1, count - 1, 0)


def test_otlp_traces_and_price_overrides(platform: Platform) -> None:
    user = platform.register()
    start = 1_767_607_200_000_000_000

    def span(n: int, tokens: int) -> dict[str, Any]:
        return {
            "traceId": "t",
            "spanId": f"s{n}",
            "startTimeUnixNano": str(start + n * 1_000_000_000),
            "endTimeUnixNano": str(start + n * 1_000_000_000 + 900_000_000),
            "status": {"code": 1},
            "attributes": [
                {"key": k, "value": v}
                for k, v in {
                    "gen_ai.provider.name": {"stringValue": "openai"},
                    "gen_ai.request.model": {"stringValue": "gpt-4o"},
                    "gen_ai.usage.input_tokens": {"intValue": str(tokens)},
                    "gen_ai.usage.output_tokens": {"intValue": "1000"},
                }.items()
            ],
        }

    export = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "checkout-assistant"}}]
                },
                "scopeSpans": [{"spans": [span(1, 1_000_000), span(2, 1_000_000)]}],
            }
        ]
    }
    answer = platform.api(user, "POST", "/api/v1/usage/otlp", json=export).json()
    assert (answer["accepted"], answer["partialSuccess"]["rejectedSpans"]) == (2, 0)
    summary = stored(platform, user, 2)
    assert summary["total_cost_usd"] == ds.cents(2 * (2.5 + 0.01)), (
        "gpt-4o list prices: $2.50 in, $10 out per 1M"
    )

    put = platform.api(
        user,
        "PUT",
        "/api/v1/usage/prices",
        json={"overrides": [{"provider": "openai", "model": "gpt-4o", "input": 1.0, "output": 4.0}]},
    )
    assert put.status_code == 200
    prices = platform.api(user, "GET", "/api/v1/usage/prices").json()
    assert prices["as_of"] and prices["overrides"]["overrides"][0]["input"] == 1.0
    repriced = platform.api(user, "GET", "/api/v1/usage/summary").json()
    assert repriced["total_cost_usd"] == ds.cents(2 * (1.0 + 0.004)), (
        "the whole history at the negotiated price"
    )
    assert repriced["by_model"][0]["model"] == "gpt-4o"
