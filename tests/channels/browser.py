"""What the headless-Chromium tests share: where Chromium is, when to skip, how to launch."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ANSWER_S = 20_000  # ms: an answer from the demo bot (model + action) on a busy CPU
MARKS = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists() and not os.environ.get("FRONTDESK_REQUIRE_SERVICES"),
        reason="Chromium not installed (`make browser` installs it from Debian)",
    ),
]


@asynccontextmanager
async def chromium() -> AsyncIterator[Any]:
    """The system Chromium, headless, under Playwright (its own download fails here)."""
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-background-networking", "--disable-gpu"],
        )
        try:
            yield browser
        finally:
            await browser.close()
