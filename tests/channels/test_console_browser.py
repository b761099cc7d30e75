"""The agent console and the widget together in real headless Chromium."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from channels.console.auth import hash_password
from channels.settings import Settings
from channels.store import AgentRole, Store
from tests.channels.browser import ANSWER_S, MARKS, chromium
from tests.channels.server import running_server
from tests.channels.test_console import PASSWORD, now

pytestmark = MARKS


@pytest.fixture
def settings(tmp_path: Path, shop_home: Path) -> Settings:
    return Settings(
        home=shop_home,
        bot=Path("examples/shop"),
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'store.db'}",
        secret_key="k" * 40,
        console_poll_s=0.5,
    )


@pytest.fixture
async def server(settings: Settings, shop_bundle: Any) -> AsyncIterator[str]:
    store = await Store.open(settings.store_url())
    password_hash = await asyncio.to_thread(hash_password, PASSWORD)
    await store.add_agent("bob@shop.example", "Bob", password_hash, AgentRole.ADMIN, now())
    await store.close()
    with running_server(settings, model=shop_bundle) as address:
        yield address


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with chromium() as launched:
        yield launched


async def new_page(browser: Any, width: int, height: int) -> Any:
    context = await browser.new_context(viewport={"width": width, "height": height})
    return await context.new_page()


async def say(page: Any, text: str) -> None:
    await page.get_by_label("Your message").fill(text)
    await page.get_by_label("Your message").press("Enter")


async def log_in(agent: Any, server: str) -> None:
    """The admin Bob logs in to the console."""
    await agent.goto(f"http://{server}/console")
    await agent.get_by_label("Email").fill("bob@shop.example")
    await agent.get_by_label("Password").fill(PASSWORD)
    await agent.get_by_role("button", name="Log in").click()


async def test_agent_takes_over_and_hands_back(server: str, browser: Any, artifacts: Path) -> None:
    """A customer asks for a person; the agent sees it in the queue, takes it, answers with
    a suggested reply, sees the customer's markup as text, and hands back: the bot answers."""
    from playwright.async_api import expect

    dialogs: list[str] = []
    customer = await new_page(browser, 480, 760)
    agent = await new_page(browser, 1360, 820)
    for page in (customer, agent):
        page.on("dialog", lambda d: dialogs.append(d.message))

    await agent.goto(f"http://{server}/console")
    await agent.get_by_label("Email").fill("bob@shop.example")
    await agent.get_by_label("Password").fill("wrong password")
    await agent.get_by_role("button", name="Log in").click()
    await expect(agent.get_by_role("alert").first).to_have_text("wrong email or password")
    await agent.get_by_label("Password").fill(PASSWORD)
    await agent.get_by_role("button", name="Log in").click()
    await expect(agent.locator("#conn")).to_have_text("live")
    await expect(agent.locator("#queue-empty")).to_be_visible()

    await customer.goto(f"http://{server}/")
    widget = customer.get_by_role("log")
    await say(customer, "I want to talk to a person")
    await expect(widget).to_contain_text("Waiting for a member of our team", timeout=ANSWER_S)

    queue = agent.locator("#queue .item")
    await expect(queue).to_have_count(1, timeout=ANSWER_S)
    await expect(queue.first).to_contain_text("asked for a person")
    await expect(queue.first).to_contain_text("I want to talk to a person")
    await expect(queue.first.locator(".wait")).to_contain_text("waiting")
    await expect(agent.locator("#numbers")).to_contain_text("Escalated: asked for a person")
    await agent.screenshot(path=str(artifacts / "console-queue.png"))

    await queue.first.get_by_role("button", name="Take").click()
    await expect(agent.locator("#chat-status")).to_have_text("agent")
    await expect(agent.locator("#mine .item")).to_have_count(1)
    await expect(agent.locator("#queue .item")).to_have_count(0)
    await expect(customer.get_by_role("log")).to_contain_text("An agent joined")
    log = agent.get_by_role("log", name="Conversation")
    await expect(log.locator(".msg.customer")).to_have_text(
        ["CustomerTagI want to talk to a person"]
    )

    await say(customer, "my order 1042 never arrived")
    await expect(log.locator(".msg.customer")).to_have_count(2)
    suggestion = agent.locator("#suggestions button").first
    await expect(suggestion).to_be_visible(timeout=ANSWER_S)
    suggested = await suggestion.locator("span").first.text_content()
    await suggestion.click()
    await expect(agent.get_by_label("Your reply")).to_have_value(suggested or "")
    await agent.get_by_label("Your reply").press("End")
    await agent.get_by_label("Your reply").type(" (Bob)")
    await agent.get_by_role("button", name="Send", exact=True).click()
    reply = f"{suggested} (Bob)"
    await expect(customer.locator(".fd-agent")).to_contain_text(reply)
    await expect(log.locator(".msg.agent")).to_contain_text(reply)

    hostile = "<script>alert(1)</script>"
    await say(customer, hostile)
    await expect(log.locator(".msg.customer .body").last).to_have_text(hostile)
    assert await agent.locator("#log script").count() == 0

    await log.locator(".msg.customer .tagbtn").nth(1).click()
    await agent.get_by_label("Intent the bot should have recognised").fill("order_status")
    await agent.get_by_role("button", name="Save tag").click()
    await expect(log.locator(".tagged")).to_have_text("tagged: order_status")
    await agent.screenshot(path=str(artifacts / "console-conversation.png"))
    await customer.screenshot(path=str(artifacts / "console-widget-with-agent.png"))

    await agent.get_by_role("button", name="Hand back to bot").click()
    await expect(agent.locator("#chat-status")).to_have_text("bot")
    await expect(customer.get_by_role("log")).to_contain_text("with our assistant again")
    await say(customer, "how long does delivery take?")
    await expect(customer.get_by_role("log")).to_contain_text("working days", timeout=ANSWER_S)
    await expect(log.locator(".msg.bot").last).to_contain_text("working days")
    await agent.screenshot(path=str(artifacts / "console-handed-back.png"))
    assert dialogs == []  # nothing anyone typed ran as script


async def test_customer_rates_after_the_agent_closes(
    server: str, browser: Any, artifacts: Path, settings: Settings
) -> None:
    """After the agent closes the conversation the widget offers 1-5 stars; the rating is
    stored."""
    from playwright.async_api import expect

    customer = await new_page(browser, 480, 640)
    agent = await new_page(browser, 1360, 820)
    await log_in(agent, server)
    await customer.goto(f"http://{server}/")
    await say(customer, "I want to talk to a person")
    queue = agent.locator("#queue .item")
    await expect(queue).to_have_count(1, timeout=ANSWER_S)
    await queue.first.get_by_role("button", name="Take").click()
    await expect(agent.locator("#chat-status")).to_have_text("agent")
    await expect(agent.locator("#suggestions button").first).to_be_visible(timeout=ANSWER_S)
    await agent.get_by_role("button", name="Close", exact=True).click()
    await expect(agent.locator("#chat-status")).to_have_text("closed")
    await expect(agent.locator("#suggestions button")).to_have_count(0)  # nobody to send to

    stars = customer.get_by_role("group", name="Rate this conversation")
    await expect(stars).to_be_visible()
    await customer.screenshot(path=str(artifacts / "console-widget-rating.png"))
    await stars.get_by_role("button", name="4 stars").click()
    await expect(stars).to_have_text("Thanks for your rating!")
    store = await Store.open(settings.store_url())
    try:
        async with asyncio.timeout(10):
            while True:
                numbers = await store.desk_numbers(now().replace(year=2000))
                if numbers.ratings == 1:
                    break
                await asyncio.sleep(0.1)
        assert numbers.average_rating == 4.0
    finally:
        await store.close()


async def test_console_on_a_phone_keeps_the_queue_whole(
    server: str, browser: Any, artifacts: Path
) -> None:
    """At 390 px the desk is one column that the page scrolls: the queue is not squeezed
    into a clipped strip, its Take button can be reached, and taking a conversation brings
    it into view."""
    from playwright.async_api import expect

    customer = await new_page(browser, 480, 640)
    agent = await new_page(browser, 390, 844)
    await log_in(agent, server)
    await expect(agent.locator("#conn")).to_have_text("live")
    await customer.goto(f"http://{server}/")
    await say(customer, "I want to talk to a person")
    queue = agent.locator("#queue .item")
    await expect(queue).to_have_count(1, timeout=ANSWER_S)
    side = agent.locator(".side")
    clipped = await side.evaluate("s => s.scrollHeight - s.clientHeight")
    assert clipped <= 1, f"the queue column hides {clipped}px behind its own scrollbar"
    take = queue.first.get_by_role("button", name="Take")
    box = await take.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
    await agent.screenshot(path=str(artifacts / "console-phone-queue.png"), full_page=True)
    await take.click()
    await expect(agent.locator("#chat-status")).to_have_text("agent")
    await expect(agent.get_by_label("Your reply")).to_be_in_viewport(timeout=5000)
    await agent.screenshot(path=str(artifacts / "console-phone-taken.png"))
