"""Browser tests: Debian's Chromium driven by Playwright against the whole platform
(``apex up`` in a temporary folder), the way a person meets Apex.

Chromium comes from Debian (``make browser-deps`` installs it); Playwright never downloads
a browser. Every test gets its own browser context (its own tab storage, so its own
session); a page error (an uncaught exception in the page's scripts) fails the test; a
failed test leaves a screenshot in ``test-artifacts/browser/``."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from tests.browser.pages import ARTIFACTS, Person
from tests.e2e.platform import Platform, platform_env

CHROMIUM = os.environ.get("APEX_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Short-lived access tokens, so the page's refresh-before-expiry happens during the tests.
ACCESS_TTL_S = "40"
_FAILED = pytest.StashKey[bool]()
# What a person would wait for on a busy machine (runs, restarts); steps stay bounded.
expect.set_options(timeout=30_000)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[object]:
    report = yield
    if report.when == "call":  # type: ignore[attr-defined]
        item.stash[_FAILED] = report.failed  # type: ignore[attr-defined]
    return report


@pytest.fixture(scope="package")
def platform() -> Iterator[Platform]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium is not at {CHROMIUM}: run `make browser-deps` (apt-get install chromium)")
    home = Path(tempfile.mkdtemp(prefix="apex-browser-"))
    home.chmod(0o755)
    env = platform_env(home)
    env["APEX_JWT_ACCESS_TTL_S"] = ACCESS_TTL_S
    running = Platform(home, env)
    try:
        running.start(timeout=300.0)
        yield running
    finally:
        running.stop()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="package")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


@pytest.fixture
async def context(browser: Browser, platform: Platform) -> AsyncIterator[BrowserContext]:
    ctx = await browser.new_context(base_url=platform.gateway, viewport={"width": 1400, "height": 1000})
    ctx.set_default_timeout(30_000)
    yield ctx
    await ctx.close()


@pytest.fixture
async def page(context: BrowserContext, request: pytest.FixtureRequest) -> AsyncIterator[Page]:
    tab = await context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    yield tab
    if request.node.stash.get(_FAILED, False) and not tab.is_closed():
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        await tab.screenshot(path=str(ARTIFACTS / f"FAILED-{request.node.name}.png"), full_page=True)
    assert not errors, f"the page raised: {errors}"


@pytest.fixture(scope="package")
def operator_site(platform: Platform) -> Iterator[tuple[str, Person]]:
    """The platform seen by an operator: an auth replica whose configuration names one
    operator (``APEX_OPERATOR_USERS``), and a gateway replica signing in through it.
    Returns (that gateway's URL, the operator)."""
    from apex_cli.embedded import free_ports
    from tests.e2e.hostile import spawn_ready

    user = platform.register()
    operator = Person(email=user.email, password=user.password, organisation="")
    auth_port, gateway_port = free_ports(2)
    auth_url, gateway_url = f"http://127.0.0.1:{auth_port}", f"http://127.0.0.1:{gateway_port}"
    auth = spawn_ready(
        platform,
        "auth",
        f"{auth_url}/readyz",
        APEX_AUTH_PORT=str(auth_port),
        APEX_OPERATOR_USERS=f'["{user.user_id}"]',
    )
    gateway = spawn_ready(
        platform,
        "gateway",
        f"{gateway_url}/readyz",
        APEX_GATEWAY_PORT=str(gateway_port),
        APEX_AUTH_URL=auth_url,
        APEX_ALLOWED_ORIGINS=f'["{gateway_url}"]',
    )
    yield gateway_url, operator
    for proc in (gateway, auth):
        proc.terminate()
        proc.wait(30)


@pytest.fixture
async def operator_page(
    browser: Browser, operator_site: tuple[str, Person], request: pytest.FixtureRequest
) -> AsyncIterator[Page]:
    """A tab on the operator's gateway (its own origin, so its own session)."""
    ctx = await browser.new_context(base_url=operator_site[0], viewport={"width": 1400, "height": 1000})
    ctx.set_default_timeout(30_000)
    tab = await ctx.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    yield tab
    if request.node.stash.get(_FAILED, False) and not tab.is_closed():
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        await tab.screenshot(path=str(ARTIFACTS / f"FAILED-{request.node.name}.png"), full_page=True)
    await ctx.close()
    assert not errors, f"the page raised: {errors}"
