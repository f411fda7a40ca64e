"""The dashboards: the platform's as an operator sees it (every service healthy, the
figures of a run that just happened: SLA, delivery, streams, audit; a replica that dies
shown down within seconds); a tenant admin's, with their organisation only; and a member
of the organisation kept out."""

from __future__ import annotations

import subprocess
import uuid

import httpx
from playwright.async_api import Page, expect

from apex_cli.embedded import free_port
from apex_contracts.health import SERVICES
from tests.browser.pages import (
    PASSWORD,
    access_token,
    ask,
    connected,
    keep_screenshot,
    register,
    run_ended,
    sign_in,
)
from tests.browser.pages import Person as Member
from tests.e2e.platform import Platform

REPLICA_WAIT_MS = 90_000


async def open_dashboard(page: Page) -> None:
    await page.get_by_role("link", name="Dashboard").click()
    await expect(page.locator("#refresh-state")).to_have_attribute("data-state", "open")


async def test_every_service_is_healthy_and_a_killed_replica_is_shown_down(
    operator_page: Page, platform: Platform, operator_site: tuple[str, Member]
) -> None:
    # A second tools replica (on its own port), started first: a process takes a while to boot.
    replica = platform.spawn_service("tools", APEX_TOOLS_PORT=str(free_port()))
    try:
        await operator_page.goto("/")
        await sign_in(operator_page, operator_site[1])
        await connected(operator_page)
        await _healthy_then_down(operator_page, platform, replica)
    finally:
        if replica.poll() is None:
            replica.kill()
            replica.wait(10)


async def _healthy_then_down(page: Page, platform: Platform, replica: subprocess.Popen[bytes]) -> None:
    await ask(page, "Where is my LLM spend going?")
    await run_ended(page)
    await open_dashboard(page)
    for service in SERVICES:
        await expect(page.locator(f'#services tr[data-service="{service}"]')).to_have_attribute(
            "data-state", "healthy"
        )
    ttfe = page.locator('#sla tr[data-measure="Time to first event"][data-window="300"]')
    await expect(ttfe).not_to_have_attribute("data-samples", "0")
    await expect(
        page.locator('#sla tr[data-measure="Run duration"][data-window="86400"]')
    ).not_to_have_attribute("data-samples", "0")
    await expect(
        page.locator('#sla tr[data-measure="Delivery latency"][data-window="300"]')
    ).not_to_have_attribute("data-samples", "0")
    await expect(page.locator('#delivery tr[data-gateway="all"]')).not_to_have_attribute("data-sent", "0")
    await expect(page.locator('#consumers tr[data-consumer="orchestrator-run-start"]')).to_be_visible()
    await expect(page.locator("#projectors")).to_contain_text("clickhouse")
    await expect(page.locator("#audit")).to_contain_text("auth.register")
    await expect(page.locator("#dash")).to_have_attribute("data-scope", "platform tenant")
    await keep_screenshot(page, "dashboard", for_docs=True, full_page=True)

    row = page.locator(f'#instances tr[data-service="tools"][data-instance$="-{replica.pid}"]')
    await expect(row).to_have_attribute("data-state", "healthy", timeout=REPLICA_WAIT_MS)
    await expect(page.locator('#services tr[data-service="tools"]')).to_contain_text("2 of 2")
    replica.kill()
    replica.wait(10)
    await expect(row).to_have_attribute("data-state", "down")
    await expect(page.locator('#services tr[data-service="tools"]')).to_contain_text("1 of 1")
    await row.scroll_into_view_if_needed()
    await keep_screenshot(page, "dashboard-replica-down")


async def test_a_tenant_admin_sees_their_organisation_and_nothing_of_the_platform(
    page: Page, platform: Platform
) -> None:
    await register(page)
    await ask(page, "Where is my LLM spend going?")
    await run_ended(page)
    await open_dashboard(page)
    await expect(page.locator("#dash")).to_have_attribute("data-scope", "tenant")
    await expect(page.locator("#dash-title")).to_have_text("Your organisation")
    await expect(page.locator("#runs tr[data-run]")).to_have_count(1)
    await expect(page.locator("#runs tr[data-run]")).to_have_attribute("data-status", "needs_data")
    await expect(
        page.locator('#sla tr[data-measure="Time to first event"][data-window="300"]')
    ).not_to_have_attribute("data-samples", "0")
    await expect(page.locator("#audit")).to_contain_text("auth.register")
    for platform_only in ("#services", "#instances", "#streams", "#consumers", "#delivery"):
        await expect(page.locator(platform_only)).to_be_hidden()
    shown = await page.locator("#dash").inner_text()
    for name in ("APEX_EVT", "APEX_CMD", "orchestrator-run-start", "Delivery latency", "Instances"):
        assert name not in shown, f"a tenant admin's dashboard shows {name!r}"
    await keep_screenshot(page, "dashboard-tenant", full_page=True)


async def test_a_member_is_told_the_dashboard_is_for_admins(page: Page, platform: Platform) -> None:
    await register(page)
    admin_token = await access_token(page)
    member = Member(email=f"member-{uuid.uuid4().hex[:10]}@example.com", password=PASSWORD, organisation="")
    async with httpx.AsyncClient(
        base_url=platform.gateway, timeout=30
    ) as http:  # through the gateway's /auth
        invite = await http.post(
            "/auth/invites",
            json={"email": member.email, "role": "member"},
            headers={"Authorization": f"Bearer {admin_token}"},
        )
        invite.raise_for_status()
        joined = await http.post(
            "/auth/register",
            json={
                "email": member.email,
                "password": member.password,
                "invite": invite.json()["invite_token"],
            },
        )
        joined.raise_for_status()
    await page.get_by_role("button", name="Sign out").click()
    await page.goto("/dashboard")
    await sign_in(page, member)
    await expect(page.get_by_role("alert").filter(has_text="needs the admin role")).to_be_visible()
    await expect(page.locator("#dash")).to_be_hidden()
