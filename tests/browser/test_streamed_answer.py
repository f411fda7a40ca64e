"""The chat page shows one coherent streamed answer when a step's attempt is superseded:
the thread receives an answer streamed by a first attempt, the ``message.superseded`` of
the step's second attempt, the second attempt's answer and a late chunk of the first (a
worker that woke up). The page shows the second answer only, live and after a reload
(replay)."""

from __future__ import annotations

import httpx
from playwright.async_api import Page, expect

from apex_contracts import (
    MessageDelta,
    MessageDeltaData,
    MessageSuperseded,
    MessageSupersededData,
    Scope,
    derive_id,
    new_id,
)
from apex_runtime import Bus
from tests.browser.pages import access_token, ask, connected, register, run_ended
from tests.e2e.platform import Platform

FIRST = ["The first attempt began ", "to explain something else"]
SECOND = ["The second attempt ", "says this, ", "and only this."]


async def test_a_superseded_attempt_leaves_one_answer_live_and_replayed(
    page: Page, platform: Platform
) -> None:
    await register(page)
    await ask(page, "How much did we spend last week?")
    await run_ended(page)
    thread_id = (await page.evaluate("location.hash")).lstrip("#")
    async with httpx.AsyncClient() as http:
        me = (
            await http.get(
                f"{platform.auth}/auth/me", headers={"Authorization": f"Bearer {await access_token(page)}"}
            )
        ).json()
    run_id = new_id("run")
    scope = Scope(tenant_id=me["tenant_id"], user_id=me["user_id"], thread_id=thread_id, run_id=run_id)
    first_id, second_id = derive_id("msg", run_id, "1"), derive_id("msg", run_id, "2")

    def chunk(message_id: str, attempt: int, index: int, text: str) -> MessageDelta:
        return scope.make(
            MessageDelta,
            MessageDeltaData(message_id=message_id, index=index, text=text, step=3, attempt=attempt),
            id=f"{run_id}:3:a{attempt}:delta:0:{index}",
            agent="reporting",
        )

    bus = await Bus.connect(
        platform.recorded_env()["APEX_NATS_URL"], "browser-test", **platform.nats_options()
    )
    try:
        for index, text in enumerate(FIRST):
            await bus.publish_event(chunk(first_id, 1, index, text))
        run = page.locator(f'section.run[data-run="{run_id}"]')
        await expect(run.locator(".draft")).to_have_text("".join(FIRST))
        await bus.publish_event(
            scope.make(
                MessageSuperseded,
                MessageSupersededData(step=3, attempt=2, message_ids=[first_id]),
                id=f"{run_id}:3:superseded:2",
                agent="reporting",
            )
        )
        for index, text in enumerate(SECOND[:2]):
            await bus.publish_event(chunk(second_id, 2, index, text))
        await bus.publish_event(
            scope.make(
                MessageDelta,
                MessageDeltaData(message_id=first_id, index=2, text=" (late)", step=3, attempt=1),
                id=f"{run_id}:3:a1:delta:0:2",
                agent="reporting",
            )
        )
        await bus.publish_event(chunk(second_id, 2, 2, SECOND[2]))
    finally:
        await bus.close()

    for moment in ("live", "replayed"):
        if moment == "replayed":
            await page.reload()
            await connected(page)
        run = page.locator(f'section.run[data-run="{run_id}"]')
        await expect(run.locator(".draft:visible")).to_have_text("".join(SECOND))
        await expect(run.locator(".draft")).to_have_count(1)
        await expect(run.locator(f'.draft[data-message="{first_id}"]')).to_have_count(0)
        await expect(run.locator('li[data-type="message.superseded"]')).to_contain_text(
            "restarted its answer"
        )
