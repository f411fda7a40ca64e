"""The chat page as a person uses it: an account, usage data with a few bad rows, a
question, the run watched step by step, the report; threads kept tidy; a stuck run
cancelled; signing out and in; the session kept alive past its token's lifetime."""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import time
from dataclasses import replace
from pathlib import Path

import httpx
from playwright.async_api import Page, WebSocket, expect

from apex_cli.demo_data import generate
from tests.browser.pages import (
    AGENTS,
    access_token,
    ask,
    connected,
    keep_screenshot,
    last_run,
    register,
    run_ended,
    sign_in,
)
from tests.e2e.platform import Platform


def usage_file(folder: Path) -> tuple[Path, int]:
    """A week of realistic usage as NDJSON with three bad rows at known lines."""
    lines = [json.dumps(row) for row in generate(days=7)]
    good = len(lines)
    lines.insert(3, json.dumps({"ts": "yesterday", "provider": "openai", "model": "gpt-4o"}))  # line 4
    lines.insert(10, "this is not json")  # line 11
    lines.append(
        json.dumps(
            {
                "ts": "2026-01-01T00:00:00Z",
                "provider": "openai",
                "model": "gpt-4o",
                "prompt_tokens": -5,
                "completion_tokens": 1,
            }
        )
    )  # the last line
    path = folder / "usage.ndjson"
    path.write_text("\n".join(lines))
    return path, good


async def until_rows_are_queryable(platform: Platform, token: str, rows: int) -> dict[str, object]:
    async with httpx.AsyncClient(
        base_url=platform.gateway, headers={"Authorization": f"Bearer {token}"}
    ) as http:
        for _ in range(240):
            summary = (await http.get("/api/v1/usage/summary", timeout=30)).json()
            if summary.get("requests") == rows:
                return summary  # type: ignore[no-any-return]
            await asyncio.sleep(0.5)
    raise AssertionError(f"the uploaded rows never became queryable: {summary}")


async def test_bad_rows_are_named_and_the_report_is_built_from_the_good_ones(
    page: Page, platform: Platform, tmp_path: Path
) -> None:
    await register(page)
    path, good = usage_file(tmp_path)
    await page.get_by_label("Usage file (CSV, NDJSON or JSON)").set_input_files(path)
    await page.get_by_role("button", name="Upload", exact=True).click()
    result = page.locator("#upload-result")
    await expect(result).to_contain_text(f"Accepted {good} rows, 0 duplicates, 3 rejected.", timeout=60_000)
    rejected = result.get_by_role("listitem")
    await expect(rejected).to_have_count(3)
    await expect(rejected.nth(0)).to_contain_text("Line 4: ts")
    await expect(rejected.nth(1)).to_contain_text("Line 11: not valid JSON")
    await expect(rejected.nth(2)).to_contain_text(f"Line {good + 3}: prompt_tokens")
    await keep_screenshot(page, "upload-rejected-rows")
    summary = await until_rows_are_queryable(platform, await access_token(page), good)

    await ask(page, "Where is my LLM spend going and how do I cut it?")
    await run_ended(page)
    run = last_run(page)
    timeline = run.locator("ol.timeline")
    await expect(timeline).to_have_attribute("aria-live", "polite")
    for agent in AGENTS:
        for stage in ("agent_started", "agent_thinking", "agent_completed"):
            await expect(
                timeline.locator(f'li[data-type="{stage}"][data-agent="{agent}"]').first
            ).to_be_visible()
    calls = timeline.locator('li[data-type="tool_executing"]')
    done = timeline.locator('li[data-type="tool_completed"]')
    assert await calls.count() >= 3 and await done.count() == await calls.count()
    await expect(calls.first.locator("code.args")).to_contain_text('"period"')
    await expect(done.first).to_contain_text(" ms: ")
    await expect(run.locator(".status")).to_have_text("Completed")

    report = run.locator("section.report")
    total = summary["total_cost_usd"]
    await expect(report.locator(".total-cost")).to_have_text(f"${total:,.2f}")
    await expect(report.locator(".requests")).to_have_text(f"{good:,}")
    await expect(report.locator("table.by-model tbody tr")).to_have_count(len(summary["by_model"]))  # type: ignore[arg-type]
    recommendations = report.locator("ol.recommendations > li")
    assert await recommendations.count() >= 1
    await expect(recommendations.first).to_contain_text("saves about $")
    await expect(run.locator(".markdown table").first).to_contain_text(
        "claude-opus-4-1"
    )  # markdown table rendered
    # The end of the timeline above the start of the answer: the view worth showing.
    await page.evaluate(
        "() => { const box = document.getElementById('conversation');"
        " const answer = box.querySelector('section.run:last-of-type .answer');"
        " box.scrollTop = answer.offsetTop - box.offsetTop - 330; }"
    )
    await keep_screenshot(page, "chat", for_docs=True)
    await report.scroll_into_view_if_needed()
    await keep_screenshot(page, "chat-report")


async def test_threads_are_created_renamed_searched_and_deleted_past_a_token_refresh(page: Page) -> None:
    sockets: list[WebSocket] = []
    sent: list[str] = []

    def watch(ws: WebSocket) -> None:
        sockets.append(ws)
        ws.on("framesent", lambda payload: sent.append(str(payload)))

    page.on("websocket", watch)
    await register(page)
    first_token = await access_token(page)
    await ask(page, "Which models are slowest at p95?")
    await run_ended(page)
    await expect(page.locator(".data-request")).to_be_visible()  # no data yet: the page says what to upload
    await page.get_by_role("button", name="New chat").click()
    await expect(page.locator("#thread-title")).to_have_text("New chat")
    await ask(page, "Could caching save us money?")
    await run_ended(page)
    threads = page.locator("#threads li")
    await expect(threads).to_have_count(2)

    await page.get_by_role("button", name="Rename Could caching save us money?").click()
    await page.get_by_label("New title").fill("Caching ideas")
    await page.get_by_label("New title").press("Enter")
    await expect(page.locator("#thread-title")).to_have_text("Caching ideas")
    await page.get_by_role("button", name="Delete Which models are slowest at p95?").click()
    await page.get_by_role("button", name="Delete", exact=True).click()
    await expect(threads).to_have_count(1)

    # The page refreshes its 40 s access token before it expires; everything keeps working.
    for _ in range(120):
        if await access_token(page) != first_token:
            break
        await asyncio.sleep(0.5)
    assert await access_token(page) != first_token, "the access token was not refreshed"
    # ... and hands the new token to its open socket (session.refresh), which therefore
    # outlives the first token (the gateway closes a socket whose token expired)
    first_expiry = json.loads(base64.urlsafe_b64decode(first_token.split(".")[1] + "=="))["exp"]
    await asyncio.sleep(max(0.0, first_expiry + 7 - time.time()))
    await connected(page)
    assert len(sockets) == 1 and not sockets[0].is_closed(), "the socket was closed and opened again"
    assert any('"session.refresh"' in frame for frame in sent)
    await page.reload()
    await connected(page)
    await page.get_by_label("Search conversations").fill("caching")
    await expect(threads).to_have_count(1)
    await expect(threads.first).to_contain_text("Caching ideas")  # the rename reached the server's views
    await page.get_by_label("Search conversations").fill("slowest")
    await expect(page.locator("#threads-empty")).to_be_visible()  # the deleted thread is gone
    await page.get_by_label("Search conversations").fill("")
    await threads.first.get_by_role("button", name="Caching ideas", exact=True).click()
    await expect(page.locator("#conversation .msg.user")).to_have_text("Could caching save us money?")
    await expect(last_run(page).locator(".status")).to_have_text("Needs data")


async def test_a_run_held_by_a_hung_worker_is_cancelled_from_the_page(page: Page, platform: Platform) -> None:
    await register(page)
    platform.kill("agents", signal.SIGSTOP)  # the agent worker hangs: the run cannot progress
    try:
        await ask(page, "Where is my LLM spend going?")
        run = last_run(page)
        await expect(run.locator('li[data-type="run.accepted"]')).to_have_count(1, timeout=60_000)
        await run.get_by_role("button", name="Cancel run").click()
        await run_ended(page, "run.cancelled")
    finally:
        platform.kill("agents", signal.SIGCONT)
    await expect(run.locator(".status")).to_have_text("Cancelled")
    await expect(run.get_by_role("button", name="Cancel run")).to_have_count(0)
    await expect(run.locator(".answer")).to_contain_text("Cancelled")


async def test_sign_out_then_sign_in_again(page: Page) -> None:
    person = await register(page)
    await expect(page.get_by_role("link", name="Dashboard")).to_be_visible()  # the first user is the admin
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.locator("#signin")).to_be_visible()
    await expect(page.locator("#connection")).to_have_attribute("data-state", "offline")
    await sign_in(page, replace(person, password="not the password"))
    await expect(page.locator("#signin-error")).not_to_be_empty()
    await expect(page.locator("#app")).to_be_hidden()
    await keep_screenshot(page, "sign-in-refused")
    await sign_in(page, person)
    await connected(page)
    await expect(page.locator("#who-email")).to_have_text(person.email)
    await expect(page.locator("#signin")).to_be_hidden()
