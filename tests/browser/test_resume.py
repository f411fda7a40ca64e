"""A page that loses its connection says so, reconnects by itself and resumes the thread
right after the last event it saw: when the run is over, the page shows every event of
the thread exactly once, in order, as the server's event log has them."""

from __future__ import annotations

import signal

import httpx
from playwright.async_api import BrowserContext, Page, expect

from tests.browser.pages import (
    access_token,
    ask,
    connected,
    keep_screenshot,
    last_run,
    register,
    run_ended,
    shown_seqs,
)
from tests.e2e.platform import Platform

# Events the conversation draws as a line of its own (with data-seq).
DRAWN = {
    "message.created",
    "run.accepted",
    "run.queued",
    "run.cancel_requested",
    "agent_started",
    "agent_thinking",
    "tool_executing",
    "tool_completed",
    "agent_completed",
    "agent_failed",
    "run.completed",
    "run.failed",
    "run.cancelled",
}
RESTART_WAIT_MS = 180_000


async def logged_seqs(platform: Platform, page: Page) -> list[int]:
    thread_id = page.url.split("#", 1)[1]
    async with httpx.AsyncClient(base_url=platform.gateway) as http:
        answer = await http.get(
            f"/api/v1/threads/{thread_id}/events",
            timeout=30,
            headers={"Authorization": f"Bearer {await access_token(page)}"},
        )
    answer.raise_for_status()
    return [e["seq"] for e in answer.json()["events"] if e["event"]["type"] in DRAWN]


async def test_the_gateway_dies_mid_run_and_the_page_resumes_with_nothing_missing(
    page: Page, platform: Platform
) -> None:
    await register(page)
    platform.kill("agents", signal.SIGSTOP)  # hold the run: its events happen while the page is away
    try:
        await ask(page, "Where is my LLM spend going and how do I cut it?")
        await expect(last_run(page).locator('li[data-type="run.accepted"]')).to_have_count(1, timeout=60_000)
        platform.kill("gateway")  # SIGKILL; `apex up` starts a new one
        await expect(page.locator("#connection")).to_have_attribute("data-state", "reconnecting")
        await expect(page.locator("#connection")).to_contain_text("Reconnecting")
        await keep_screenshot(page, "chat-reconnecting")
    finally:
        platform.kill("agents", signal.SIGCONT)
    await expect(page.locator("#connection")).to_have_attribute("data-state", "open", timeout=RESTART_WAIT_MS)
    await run_ended(page, "run.completed")
    await expect(last_run(page).locator('li[data-type="agent_started"]')).to_have_count(4)
    shown = await shown_seqs(page)
    assert shown == sorted(set(shown)), "shown in order, never twice"
    assert shown == await logged_seqs(platform, page), "every event of the thread is on the page"


async def test_the_network_drops_and_the_page_resumes_when_it_returns(
    page: Page, context: BrowserContext, platform: Platform
) -> None:
    await register(page)
    await ask(page, "Which of my models is the most expensive?")
    await run_ended(page, "run.completed")
    before = await shown_seqs(page)
    await context.set_offline(True)
    await expect(page.locator("#connection")).not_to_have_attribute("data-state", "open")
    await context.set_offline(False)
    await connected(page)
    await ask(page, "And which one is the slowest?")
    await expect(page.locator("section.run")).to_have_count(2)
    await run_ended(page, "run.completed")
    shown = await shown_seqs(page)
    assert shown[: len(before)] == before
    assert shown == await logged_seqs(platform, page)
