"""The chat widget in real headless Chromium (Playwright driving Debian's Chromium)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from channels.settings import Settings
from tests.channels.browser import ANSWER_S, MARKS, chromium
from tests.channels.server import free_port, running_server

pytestmark = MARKS


@pytest.fixture
def settings(tmp_path: Path, shop_home: Path) -> Settings:
    return Settings(
        home=shop_home,
        bot=Path("examples/shop"),
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'store.db'}",
    )


@pytest.fixture
def server(settings: Settings, shop_bundle: Any) -> Iterator[str]:
    with running_server(settings, model=shop_bundle) as address:
        yield address


class HostSite:
    """Another site, on another origin than Frontdesk: a real HTTP server with one page.

    A real loopback server, not a Playwright route: Chromium lets a page load loopback
    resources only when it is itself in the loopback address space (Local Network Access).
    """

    def __init__(self) -> None:
        site = self

        class Page(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = site.html.encode()
                self.send_response(200 if self.path == "/shop.html" else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.html = ""
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Page)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/shop.html"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)


@pytest.fixture
def site() -> Iterator[HostSite]:
    host = HostSite()
    yield host
    host.close()


@pytest.fixture
async def page() -> AsyncIterator[Any]:
    async with chromium() as browser:
        context = await browser.new_context(viewport={"width": 1100, "height": 760})
        yield await context.new_page()


async def send(page: Any, text: str) -> None:
    await page.get_by_label("Your message").fill(text)
    await page.get_by_label("Your message").press("Enter")


async def embed(page: Any, site: HostSite, server: str, **data: str) -> None:
    """Open a page of another site that embeds the widget with one script tag."""
    attrs = "".join(f' data-{name}="{value}"' for name, value in data.items())
    site.html = (
        "<!doctype html><html><head><title>Shop</title>"
        '<meta name="viewport" content="width=device-width, initial-scale=1"></head>'
        '<body><h1>A shop</h1><p><a href="#products">Products</a></p>'
        f'<script src="http://{server}/widget.js"{attrs}></script></body></html>'
    )
    await page.goto(site.url)


async def assert_no_duplicates(page: Any) -> None:
    seqs = await page.locator(".fd-log [data-seq]:not(.fd-buttons)").evaluate_all(
        "nodes => nodes.map(n => n.dataset.seq)"
    )
    assert len(seqs) == len(set(seqs)), seqs
    assert [int(s) for s in seqs] == sorted(int(s) for s in seqs), seqs


async def ask_then_stop(page: Any, settings: Settings, model: Any, port: int) -> None:
    """Serve on ``port``, open the demo page, get an answer, and stop the server."""
    from playwright.async_api import expect

    with ExitStack() as stack:
        await asyncio.to_thread(stack.enter_context, running_server(settings, model, port=port))
        await page.goto(f"http://127.0.0.1:{port}/")
        await send(page, "where is my order 1042?")
        log = page.get_by_role("log")
        await expect(log).to_contain_text("JD014600006281734", timeout=ANSWER_S)
        await expect(page.locator(".fd-conn")).to_have_text("online")
        await asyncio.to_thread(stack.close)  # the server stops


async def test_chat_reload_and_text_only_rendering(server: str, page: Any, artifacts: Path) -> None:
    """Chat, see the action's answer, reload and keep the history once; markup stays text."""
    from playwright.async_api import expect

    dialogs: list[str] = []
    page.on("dialog", lambda d: dialogs.append(d.message))
    await page.goto(f"http://{server}/")
    log = page.get_by_role("log")
    await expect(page.get_by_role("dialog", name="Northwind support")).to_be_visible()

    await send(page, "where is my order 1042?")
    await expect(log).to_contain_text("JD014600006281734", timeout=ANSWER_S)
    hostile = "<img src=x onerror=alert(1)>"
    await send(page, hostile)
    await expect(log.locator(".fd-customer", has_text=hostile)).to_have_count(1)
    await expect(log.locator(".fd-bot")).to_have_count(3, timeout=ANSWER_S)  # greeting + 2
    assert await page.locator(".fd-panel img").count() == 0
    await page.screenshot(path=str(artifacts / "widget-chat.png"))

    await page.reload()
    await expect(log).to_contain_text("JD014600006281734", timeout=ANSWER_S)
    await expect(log.locator(".fd-customer", has_text=hostile)).to_have_count(1)
    await expect(log.locator(".fd-customer")).to_have_count(2)  # history, no duplicates
    await expect(log.locator(".fd-bot")).to_have_count(3)
    await assert_no_duplicates(page)
    await page.screenshot(path=str(artifacts / "widget-after-reload.png"))
    assert await page.locator(".fd-panel img").count() == 0
    assert dialogs == []  # nothing the customer typed ran as script


async def test_reconnects_after_server_restart_and_loses_nothing(
    settings: Settings, shop_bundle: Any, page: Any, artifacts: Path
) -> None:
    """The server stops and comes back on the same port and store: the widget reconnects,
    keeps what was said, delivers what was typed while offline once, and chats on."""
    from playwright.async_api import expect

    port = free_port()
    log = page.get_by_role("log")
    status = page.locator(".fd-conn")

    await ask_then_stop(page, settings, shop_bundle, port)
    await expect(status).to_contain_text("reconnecting")
    await send(page, "how long does delivery take?")  # typed while the server is down
    await expect(log.locator(".fd-pending")).to_have_count(1)
    await page.screenshot(path=str(artifacts / "widget-offline.png"))

    with ExitStack() as stack:
        await asyncio.to_thread(
            stack.enter_context, running_server(settings, model=shop_bundle, port=port)
        )
        # backoff is capped at 10 s, so the widget is back well within this
        await expect(status).to_have_text("online", timeout=ANSWER_S)
        await expect(log.locator(".fd-pending")).to_have_count(0, timeout=ANSWER_S)
        await expect(log).to_contain_text("working days", timeout=ANSWER_S)
        await expect(log).to_contain_text("JD014600006281734")
        await send(page, "how much is shipping?")
        await expect(log).to_contain_text("€4.95", timeout=ANSWER_S)
        await expect(log.locator(".fd-customer")).to_have_count(3)
        await expect(log.locator(".fd-bot")).to_have_count(4)  # greeting + 3 answers
        await assert_no_duplicates(page)
        await page.screenshot(path=str(artifacts / "widget-after-restart.png"))

        await page.reload()  # the store has all of it, each once
        await expect(log.locator(".fd-bot")).to_have_count(4, timeout=ANSWER_S)
        await expect(log.locator(".fd-customer")).to_have_count(3)
        await assert_no_duplicates(page)
        await asyncio.to_thread(stack.close)


async def test_reconnect_asks_for_what_it_missed_and_gets_only_that(
    settings: Settings, shop_bundle: Any, page: Any
) -> None:
    """An agent answers while the widget is disconnected (the answer reaches the store
    only): on reconnect the widget's `hello` names the last seq it showed, the server
    replays only what came after it, and the agent's answer shows once."""
    from datetime import UTC, datetime

    from playwright.async_api import expect

    from bot.types import Role
    from channels.store import Store

    port = free_port()
    log = page.get_by_role("log")
    status = page.locator(".fd-conn")
    sent: list[dict[str, Any]] = []  # hello frames, in order
    received: list[dict[str, Any]] = []  # conversation events since the last hello

    def watch(ws: Any) -> None:
        def on_sent(payload: str | bytes) -> None:
            frame = json.loads(payload)
            if frame.get("type") == "hello":
                sent.append(frame)
                received.clear()

        def on_received(payload: str | bytes) -> None:
            frame = json.loads(payload)
            if frame.get("type") in {"message", "status"}:
                received.append(frame)

        ws.on("framesent", on_sent)
        ws.on("framereceived", on_received)

    page.on("websocket", watch)
    await ask_then_stop(page, settings, shop_bundle, port)
    await expect(status).to_contain_text("reconnecting")
    shown = max(
        int(n)
        for n in await log.locator("[data-seq]").evaluate_all("ns => ns.map(n => n.dataset.seq)")
    )
    conversation_id = sent[0].get("conversation_id") or await page.evaluate(
        "Object.entries(localStorage).map(([k, v]) => JSON.parse(v).conversation_id).find(Boolean)"
    )

    store = await Store.open(settings.database_url)
    try:
        stored = await store.events_after(conversation_id, 0)
        assert stored[-1].seq == shown  # the widget showed everything up to here
        missed = await store.append_event(
            conversation_id,
            kind="message",
            role=Role.AGENT,
            text="Agent here: order 1042 leaves the warehouse today.",
            payload={},
            now=datetime.now(UTC),
        )
    finally:
        await store.close()

    with ExitStack() as stack:
        await asyncio.to_thread(
            stack.enter_context, running_server(settings, model=shop_bundle, port=port)
        )
        await expect(status).to_have_text("online", timeout=ANSWER_S)
        await expect(log).to_contain_text("leaves the warehouse today", timeout=ANSWER_S)
        hello = sent[-1]
        assert hello["conversation_id"] == conversation_id and hello["last_seq"] == shown
        assert [f["seq"] for f in received] == [missed.seq]
        await expect(log.locator(".fd-agent")).to_have_count(1)
        await assert_no_duplicates(page)
        await asyncio.to_thread(stack.close)


async def test_message_lost_on_the_way_survives_a_reload(server: str, page: Any) -> None:
    """A message whose frame never reached the server stays in the outbox across a reload,
    is sent on the next connection and answered, and is shown once."""
    from playwright.async_api import expect

    connections = 0
    dropped = asyncio.Event()

    async def relay(ws: Any) -> None:
        # the first connection loses every message frame the page sends
        nonlocal connections
        connections += 1
        lossy = connections == 1
        upstream = ws.connect_to_server()

        def from_page(message: str | bytes) -> None:
            if lossy and json.loads(message)["type"] == "message":
                dropped.set()
                return
            upstream.send(message)

        ws.on_message(from_page)

    await page.route_web_socket("**/ws/chat", relay)
    await page.goto(f"http://{server}/")
    log = page.get_by_role("log")
    await expect(page.locator(".fd-conn")).to_have_text("online")
    await send(page, "how long does delivery take?")
    async with asyncio.timeout(ANSWER_S / 1000):
        await dropped.wait()
    await expect(log.locator(".fd-pending")).to_have_count(1)

    await page.reload()
    await expect(log).to_contain_text("working days", timeout=ANSWER_S)
    await expect(log.locator(".fd-pending")).to_have_count(0)
    await expect(log.locator(".fd-customer")).to_have_count(1)
    await expect(log.locator(".fd-bot")).to_have_count(2)  # greeting + the answer
    await assert_no_duplicates(page)
    assert connections == 2


async def test_a_refused_message_is_marked_not_sent_and_never_resent(
    settings: Settings, shop_bundle: Any, page: Any, artifacts: Path
) -> None:
    """The input takes the server's text limit from `welcome`; a longer message that gets
    past it anyway is refused by the server, marked as not sent with a plain reason, taken
    out of the outbox (not resent after a reload) and put back in the input to shorten;
    the next message is answered as usual."""
    from playwright.async_api import expect

    limited = settings.model_copy(update={"max_text_chars": 40})
    with ExitStack() as stack:
        address = await asyncio.to_thread(
            stack.enter_context, running_server(limited, model=shop_bundle)
        )
        await page.goto(f"http://{address}/")
        log = page.get_by_role("log")
        box = page.get_by_label("Your message")
        await expect(page.locator(".fd-conn")).to_have_text("online")
        assert await box.evaluate("i => i.maxLength") == 40
        long = "my parcel arrived damaged and I would like a refund please"
        await box.evaluate("(i, t) => { i.value = t; }", long)  # as a script or paste could
        await box.press("Enter")
        failed = log.locator(".fd-failed")
        await expect(failed).to_have_text(f"{long} (not sent)")  # the last words visually hidden
        why = log.locator(".fd-failed-why")
        await expect(why).to_contain_text("at most 40 characters")
        assert await failed.get_attribute("aria-describedby") == await why.get_attribute("id")
        await expect(log.locator(".fd-pending")).to_have_count(0)
        await expect(box).to_have_value(long)
        await page.screenshot(path=str(artifacts / "widget-refused.png"))
        await box.fill("how long does delivery take?")
        await box.press("Enter")
        await expect(log).to_contain_text("working days", timeout=ANSWER_S)
        outbox = await page.evaluate(
            "() => Object.keys(localStorage).map(k => localStorage.getItem(k)).join()"
        )
        assert long not in outbox
        await page.reload()
        await expect(log).to_contain_text("working days", timeout=ANSWER_S)
        await expect(log.locator(".fd-customer")).to_have_count(1)  # only the stored one
        assert long not in await log.inner_text()
        await asyncio.to_thread(stack.close)


async def test_typing_indicator_and_quick_replies(server: str, page: Any, artifacts: Path) -> None:
    """A `typing` frame shows an indicator until the answer; a quick reply sends its payload
    (or its title when it has none) and the buttons go away."""
    from playwright.async_api import expect

    held: list[str] = []
    answer_held = asyncio.Event()
    hold = True
    route: dict[str, Any] = {}

    def strip_payload(frame: dict[str, Any], title: str) -> None:
        for button in frame.get("buttons", []):
            if button["title"] == title:
                del button["payload"]

    async def relay(ws: Any) -> None:
        # between the page and the real server: hold the bot's answers back while `hold`
        route["page"] = ws
        upstream = ws.connect_to_server()

        def from_server(message: str | bytes) -> None:
            frame = json.loads(message)
            if frame["type"] == "message" and frame["role"] == "bot":
                strip_payload(frame, "Shipping costs")
                message = json.dumps(frame)
                if hold:
                    held.append(message)
                    answer_held.set()
                    return
            ws.send(message)

        upstream.on_message(from_server)

    await page.route_web_socket("**/ws/chat", relay)
    await page.goto(f"http://{server}/")
    log = page.get_by_role("log")
    typing = page.get_by_role("status")

    await send(page, "hello")
    await expect(typing).to_have_text("Assistant is typing…", timeout=ANSWER_S)
    async with asyncio.timeout(ANSWER_S / 1000):
        await answer_held.wait()
    await page.screenshot(path=str(artifacts / "widget-typing.png"))
    hold = False
    for message in held:
        route["page"].send(message)

    await expect(typing).to_have_text("")
    replies = page.get_by_role("group", name="Suggested replies")
    await expect(replies).to_have_count(1)
    await page.screenshot(path=str(artifacts / "widget-quick-replies.png"))
    await replies.get_by_role("button", name="Delivery times").click()
    await expect(log.locator(".fd-customer").last).to_have_text("How long does delivery take?")
    await expect(page.get_by_role("button", name="Delivery times")).to_have_count(0)
    await expect(log).to_contain_text("working days", timeout=ANSWER_S)

    await replies.get_by_role("button", name="Shipping costs").click()  # no payload
    await expect(log.locator(".fd-customer").last).to_have_text("Shipping costs")
    await expect(log.locator(".fd-bot")).to_have_count(4, timeout=ANSWER_S)
    await assert_no_duplicates(page)


async def test_phone_screen(server: str, page: Any, artifacts: Path) -> None:
    """On a 375x667 phone the panel is the whole screen and the input stays in view."""
    from playwright.async_api import expect

    await page.set_viewport_size({"width": 375, "height": 667})
    await page.goto(f"http://{server}/")
    panel = page.get_by_role("dialog", name="Northwind support")
    await expect(panel).to_be_visible()
    assert await panel.bounding_box() == {"x": 0, "y": 0, "width": 375, "height": 667}
    await send(page, "can I return a jacket that doesn't fit?")
    await expect(page.get_by_role("log")).to_contain_text("30 days", timeout=ANSWER_S)
    await expect(page.get_by_label("Your message")).to_be_in_viewport(ratio=1)
    await expect(page.get_by_role("button", name="Send")).to_be_in_viewport(ratio=1)
    await expect(page.get_by_role("button", name="Close chat")).to_be_in_viewport(ratio=1)
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width == 375  # nothing sticks out sideways
    await page.screenshot(path=str(artifacts / "widget-phone.png"))


async def test_keyboard_and_screen_reader(
    server: str, site: HostSite, page: Any, artifacts: Path
) -> None:
    """Tab reaches the bubble, Enter opens with focus in the input, Escape closes and returns
    focus to the bubble; roles, names and live regions are there for screen readers."""
    from playwright.async_api import expect

    await embed(page, site, server, title="Shop help")
    bubble = page.get_by_role("button", name="Chat with Shop help")
    dialog = page.get_by_role("dialog", name="Shop help")
    message = page.get_by_role("textbox", name="Your message")
    await expect(bubble).to_have_attribute("aria-expanded", "false")
    await expect(dialog).to_be_hidden()

    await page.keyboard.press("Tab")  # the page's own link
    await page.keyboard.press("Tab")
    await expect(bubble).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(dialog).to_be_visible()
    await expect(bubble).to_have_attribute("aria-expanded", "true")
    await expect(message).to_be_focused()
    log = page.get_by_role("log")
    await expect(log).to_have_attribute("aria-live", "polite")

    await page.keyboard.type("how long does delivery take?")
    await page.keyboard.press("Enter")
    await expect(log).to_contain_text("working days", timeout=ANSWER_S)
    await expect(message).to_be_focused()
    await page.screenshot(path=str(artifacts / "widget-keyboard.png"))

    await page.keyboard.press("Escape")
    await expect(dialog).to_be_hidden()
    await expect(bubble).to_have_attribute("aria-expanded", "false")
    await expect(bubble).to_be_focused()
    await page.keyboard.press("Enter")  # and opens again, history kept
    await expect(message).to_be_focused()
    await expect(log).to_contain_text("working days")


async def test_embedded_on_another_origin(
    server: str, site: HostSite, page: Any, artifacts: Path
) -> None:
    """On another site's page the script tag sets the look and the widget talks to the server
    it was loaded from; the conversation survives a reload there too."""
    from playwright.async_api import expect

    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    greeting = "Moin! Ask us anything."
    await embed(page, site, server, title="Harbour Shop", color="#b91c1c", greeting=greeting)
    bubble = page.get_by_role("button", name="Chat with Harbour Shop")
    await expect(bubble).to_have_css("background-color", "rgb(185, 28, 28)")
    await bubble.click()
    dialog = page.get_by_role("dialog", name="Harbour Shop")
    await expect(dialog.get_by_role("heading", name="Harbour Shop")).to_be_visible()
    log = page.get_by_role("log")
    await expect(log.locator(".fd-bot").first).to_have_text(greeting)

    await send(page, "where is my order 1042?")
    await expect(log).to_contain_text("JD014600006281734", timeout=ANSWER_S)
    await expect(log.locator(".fd-customer")).to_have_css("background-color", "rgb(185, 28, 28)")
    await page.screenshot(path=str(artifacts / "widget-embedded.png"))
    assert sockets == [f"ws://{server}/ws/chat"]

    await page.reload()
    await page.get_by_role("button", name="Chat with Harbour Shop").click()
    await expect(log).to_contain_text("JD014600006281734", timeout=ANSWER_S)
    await expect(log.locator(".fd-customer")).to_have_count(1)
