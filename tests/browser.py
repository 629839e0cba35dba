"""Headless Chromium for the page tests: Debian's /usr/bin/chromium driven by playwright, one
context whose pages record dialogs and browser-side errors, and the sign-in form."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="no browser: Debian's chromium is not installed at /usr/bin/chromium "
    "(`apt-get install chromium`, or `make browser`)",
)


@dataclass
class Browser:
    """A browser context; its pages append dialog messages to `dialogs` (and dismiss them) and
    page errors and console errors (except those containing `ignore`) to `problems`."""

    context: Any
    ignore: str | None = None
    dialogs: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    async def new_page(self):
        page = await self.context.new_page()

        async def on_dialog(dialog):
            self.dialogs.append(dialog.message)
            await dialog.dismiss()

        def on_console(m):
            if m.type == "error" and (self.ignore is None or self.ignore not in m.text):
                self.problems.append(f"console: {m.text}")

        page.on("dialog", on_dialog)
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        page.on("console", on_console)
        return page


@asynccontextmanager
async def chromium(viewport: dict[str, int] | None = None, ignore: str | None = None) -> AsyncIterator[Browser]:
    """Launch headless Chromium with one context (20 s default timeout); closed on the way out."""
    from playwright.async_api import async_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(**({"viewport": viewport} if viewport else {}))
            context.set_default_timeout(20_000)
            yield Browser(context, ignore)
        finally:
            await browser.close()


async def submit_token(page, token: str) -> None:
    """Type `token` into the login form and submit it."""
    await page.fill("#token", token)
    await page.click("button[type=submit]")


async def sign_in(page, base: str, token: str) -> None:
    """Sign in through the login form; it lands on the review page."""
    from playwright.async_api import expect

    await page.goto(f"{base}/login")
    await submit_token(page, token)
    await expect(page).to_have_url(f"{base}/review")


async def open_signed_in(page, base: str, path: str, token: str) -> None:
    """Open `path` signed out (the page sends the browser to the login form), sign in, open it again."""
    from playwright.async_api import expect

    await page.goto(f"{base}{path}")
    await expect(page).to_have_url(f"{base}/login")
    await submit_token(page, token)
    await page.goto(f"{base}{path}")
