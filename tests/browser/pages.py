"""What a person does on the pages, as reusable steps, and where screenshots go.

Screenshots of the main views are kept in ``test-artifacts/browser/`` (git-ignored).
With ``APEX_SCREENSHOTS_TO_DOCS=1`` the chat and dashboard views are also written to
``docs/screenshots/`` for the README."""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from playwright.async_api import Page, expect

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "browser"
DOCS_SHOTS = REPO / "docs" / "screenshots"
PASSWORD = "correct horse battery staple"
LIFECYCLE = ("agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_completed")
AGENTS = ("supervisor", "triage", "data_helper", "reporting")
RUN_WAIT_MS = 120_000


@dataclass
class Person:
    email: str
    password: str
    organisation: str


async def keep_screenshot(page: Page, name: str, *, for_docs: bool = False, full_page: bool = False) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=full_page)
    if for_docs and os.environ.get("APEX_SCREENSHOTS_TO_DOCS") == "1":
        DOCS_SHOTS.mkdir(parents=True, exist_ok=True)
        (DOCS_SHOTS / f"{name}.png").write_bytes(path.read_bytes())
    return path


async def register(page: Page, organisation: str | None = None) -> Person:
    """Creates an account on the sign-in page (the new user is its organisation's admin)."""
    person = Person(
        f"browser-{uuid.uuid4().hex[:10]}@example.com", PASSWORD, organisation or "Acme Analytics"
    )
    await page.goto("/")
    await page.get_by_text("New here? Create an account").click()
    await page.get_by_label("Organisation").fill(person.organisation)
    await page.locator("#register-email").fill(person.email)
    await page.get_by_label("Password (at least 10 characters)").fill(person.password)
    await page.get_by_role("button", name="Create account").click()
    await connected(page)
    return person


async def sign_in(page: Page, person: Person) -> None:
    form = page.locator("#login-form")
    await form.get_by_label("Email").fill(person.email)
    await form.get_by_label("Password").fill(person.password)
    await form.get_by_role("button", name="Sign in").click()


async def connected(page: Page) -> None:
    await expect(page.locator("#connection")).to_have_attribute("data-state", "open")
    await expect(page.locator("#connection")).to_have_text("Connected")


async def ask(page: Page, text: str) -> None:
    box = page.get_by_label("Message")
    await box.fill(text)
    await box.press("Enter")


def last_run(page: Page) -> Any:
    return page.locator("section.run").last


async def run_ended(page: Page, outcome: str = "run.completed") -> None:
    await expect(last_run(page).locator(f'li[data-type="{outcome}"]')).to_have_count(1, timeout=RUN_WAIT_MS)


async def access_token(page: Page) -> str:
    saved = await page.evaluate("sessionStorage.getItem('apex.session')")
    return str(json.loads(saved)["access"])


async def shown_seqs(page: Page) -> list[int]:
    """The seq of every event the conversation shows (user messages and timeline lines)."""
    seqs = await page.locator("#conversation [data-seq]").evaluate_all(
        "els => els.map(e => Number(e.dataset.seq))"
    )
    return [int(s) for s in seqs]
