"""The chat widget in real headless Chromium (Playwright driving Debian's Chromium)."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from channels.settings import Settings
from tests.channels.server import running_server

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists() and not os.environ.get("FRONTDESK_REQUIRE_SERVICES"),
        reason="Chromium not installed (`make browser` installs it from Debian)",
    ),
]


@pytest.fixture
def server(tmp_path: Path, shop_home: Path, shop_bundle: Any) -> Iterator[str]:
    settings = Settings(
        home=shop_home,
        bot=Path("examples/shop"),
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'store.db'}",
    )
    with running_server(settings, model=shop_bundle) as address:
        yield address


@pytest.fixture
async def page() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-background-networking", "--disable-gpu"],
        )
        context = await browser.new_context(viewport={"width": 1100, "height": 760})
        yield await context.new_page()
        await browser.close()


async def send(page: Any, text: str) -> None:
    await page.get_by_label("Your message").fill(text)
    await page.get_by_label("Your message").press("Enter")


async def test_chat_reload_and_text_only_rendering(server: str, page: Any, artifacts: Path) -> None:
    """Chat in the widget, see the action's answer, reload and keep history, markup stays text."""
    from playwright.async_api import expect

    dialogs: list[str] = []
    page.on("dialog", lambda d: dialogs.append(d.message))
    await page.goto(f"http://{server}/")
    log = page.get_by_role("log")
    await expect(page.get_by_role("dialog", name="Northwind support")).to_be_visible()

    await send(page, "where is my order 1042?")
    await expect(log).to_contain_text("JD014600006281734", timeout=20_000)
    hostile = "<img src=x onerror=alert(1)>"
    await send(page, hostile)
    await expect(log.locator(".fd-customer", has_text=hostile)).to_have_count(1)
    await expect(log.locator(".fd-bot")).to_have_count(3, timeout=20_000)  # greeting + 2 answers
    assert await log.locator("img").count() == 0
    await page.screenshot(path=str(artifacts / "widget-chat.png"))

    await page.reload()
    await expect(log).to_contain_text("JD014600006281734", timeout=20_000)
    await expect(log.locator(".fd-customer", has_text=hostile)).to_have_count(1)
    await expect(log.locator(".fd-customer")).to_have_count(2)  # history, no duplicates
    await page.screenshot(path=str(artifacts / "widget-after-reload.png"))
    assert dialogs == []  # nothing the customer typed ran as script


async def test_quick_reply_buttons_and_phone_screen(
    server: str, page: Any, artifacts: Path
) -> None:
    """On a phone-sized screen the widget fills the screen and quick replies send their payload."""
    from playwright.async_api import expect

    await page.set_viewport_size({"width": 390, "height": 780})
    await page.goto(f"http://{server}/")
    await send(page, "hello")
    button = page.get_by_role("button", name="Delivery times")
    await expect(button).to_be_visible(timeout=20_000)
    await button.click()
    await expect(page.get_by_role("log")).to_contain_text("working days", timeout=20_000)
    box = await page.get_by_role("dialog", name="Northwind support").bounding_box()
    assert box is not None and box["width"] >= 380
    await page.screenshot(path=str(artifacts / "widget-phone.png"))
