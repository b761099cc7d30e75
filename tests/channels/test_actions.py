"""Custom actions: rasa-sdk in-process, a real rasa-sdk action server, and failures."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import MappingProxyType
from typing import Any

import httpx
import pytest
import websockets

from bot.definition import load_bot
from channels.actions import ActionRequest, InProcessActions, RemoteActions, make_runner
from channels.errors import ActionFailed
from channels.settings import Settings
from tests.channels.server import free_port, running_server

SHOP = Path(__file__).resolve().parents[2] / "examples" / "shop"


def request(text: str, number: str | None) -> ActionRequest:
    entities = MappingProxyType({"order_number": number} if number else {})
    return ActionRequest("action_order_status", "conv-1", text, "order_status", 0.9, entities)


@pytest.fixture(scope="module")
def action_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `python -m rasa_sdk` action server for the demo's actions, on a free port."""
    port = free_port()
    log = tmp_path_factory.mktemp("rasa") / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rasa_sdk", "--actions", "actions", "--port", str(port)],
            cwd=SHOP,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(SHOP)},
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"rasa_sdk action server did not start:\n{log.read_text()[-2000:]}")
        time.sleep(0.2)
    yield f"{url}/webhook"
    proc.terminate()
    proc.wait(10)


@pytest.mark.parametrize(
    ("text", "number", "expect"),
    [
        ("where is my order 1042?", "1042", "JD014600006281734"),
        ("status of 2002", "2002", "was cancelled"),
        ("where is my order 9999", "9999", "couldn't find an order with the number 9999"),
        ("where is my order?", None, "What's your order number?"),
    ],
)
async def test_order_status_in_process(text: str, number: str | None, expect: str) -> None:
    """The demo action runs through rasa-sdk's executor in-process and reads orders.json."""
    runner = InProcessActions(load_bot(SHOP))
    messages = await runner.run(request(text, number))
    assert len(messages) == 1 and expect in messages[0].text


async def test_unknown_order_offers_a_person() -> None:
    """An unknown order number comes back with a 'Talk to a person' button."""
    messages = await InProcessActions(load_bot(SHOP)).run(request("order 9999", "9999"))
    assert [b.title for b in messages[0].buttons] == ["Talk to a person"]


async def test_order_status_on_a_real_action_server(action_server: str) -> None:
    """The same action answers the same way over the Rasa action webhook protocol."""
    runner = RemoteActions(load_bot(SHOP), action_server)
    try:
        messages = await runner.run(request("where is my order 3150?", "3150"))
    finally:
        await runner.aclose()
    assert "H1002345678901" in messages[0].text


def test_webhook_request_has_the_rasa_fields(action_server: str) -> None:
    """Our request body is what a rasa-sdk server expects (it answers 200 with events)."""
    from channels.actions import action_call

    body = action_call(request("order 1042", "1042"), load_bot(SHOP))
    assert set(body) == {"next_action", "sender_id", "tracker", "domain", "version"}
    answer = httpx.post(action_server, json=body, timeout=10)
    assert answer.status_code == 200
    data = answer.json()
    assert data["events"] == [
        {"event": "slot", "timestamp": None, "name": "order_number", "value": "1042"}
    ]
    assert "JD014600006281734" in data["responses"][0]["text"]


async def test_unreachable_action_server_raises_action_failed() -> None:
    """A server that is not there is an ActionFailed naming the URL, not a crash."""
    url = f"http://127.0.0.1:{free_port()}/webhook"
    runner = RemoteActions(load_bot(SHOP), url)
    try:
        with pytest.raises(ActionFailed, match="unreachable"):
            await runner.run(request("order 1042", "1042"))
    finally:
        await runner.aclose()


async def test_slow_action_times_out(shop_copy: Path) -> None:
    """An action slower than actions.timeout_s raises ActionFailed."""
    # rasa-sdk registers every Action subclass alive in the process by name, so the slow
    # action gets a name of its own rather than shadowing the demo's action_order_status.
    (shop_copy / "slow_actions.py").write_text(
        "import asyncio\nfrom rasa_sdk import Action\n"
        "class SlowLookup(Action):\n"
        "    def name(self):\n        return 'action_slow_lookup'\n"
        "    async def run(self, dispatcher, tracker, domain):\n"
        "        await asyncio.sleep(5)\n        return []\n"
    )
    text = (shop_copy / "bot.yml").read_text()
    text = text.replace("timeout_s: 5", "timeout_s: 0.3").replace(
        "module: actions", "module: slow_actions"
    )
    (shop_copy / "bot.yml").write_text(
        text.replace("action: action_order_status", "action: action_slow_lookup")
    )
    runner = InProcessActions(load_bot(shop_copy))
    slow = ActionRequest(
        "action_slow_lookup", "c", "order 1042", "order_status", 0.9, MappingProxyType({})
    )
    with pytest.raises(ActionFailed, match=r"longer than 0\.3s"):
        await runner.run(slow)


def test_runner_choice_follows_settings() -> None:
    """A URL (from bot.yml or FRONTDESK_ACTION_URL) means remote; a module means in-process."""
    bot = load_bot(SHOP)
    assert isinstance(make_runner(bot), InProcessActions)
    assert isinstance(make_runner(bot, "http://127.0.0.1:5055/webhook"), RemoteActions)


async def _ask(address: str, text: str) -> list[dict[str, Any]]:
    async with websockets.connect(f"ws://{address}/ws/chat") as ws:
        await ws.send(json.dumps({"type": "hello"}))
        await ws.recv()
        await ws.send(json.dumps({"type": "message", "client_id": "1", "text": text}))
        frames: list[dict[str, Any]] = []
        async with asyncio.timeout(20):
            while not frames or not (
                frames[-1]["type"] == "message" and frames[-1]["role"] == "bot"
            ):
                frames.append(json.loads(await ws.recv()))
        return frames


def settings_for(home: Path, tmp_path: Path, **extra: Any) -> Settings:
    return Settings(
        home=home, bot=SHOP, database_url=f"sqlite+aiosqlite:///{tmp_path}/s.db", **extra
    )


async def test_websocket_answer_through_the_action_server(
    shop_home: Path, shop_bundle: Any, tmp_path: Path, action_server: str
) -> None:
    """With FRONTDESK_ACTION_URL set, the websocket answer comes from the action server."""
    settings = settings_for(shop_home, tmp_path, action_url=action_server)
    with running_server(settings, model=shop_bundle) as address:
        frames = await _ask(address, "where is my order 2001?")
    assert "was delivered by DPD on 2026-11-18" in frames[-1]["text"]


async def test_failed_action_gets_a_polite_reply_and_a_person_offer(
    shop_home: Path, shop_bundle: Any, tmp_path: Path
) -> None:
    """When the action server is down the customer gets an apology and a person button."""
    dead = f"http://127.0.0.1:{free_port()}/webhook"
    settings = settings_for(shop_home, tmp_path, action_url=dead)
    with running_server(settings, model=shop_bundle) as address:
        frames = await _ask(address, "where is my order 1042?")
    answer = frames[-1]
    assert answer["text"] == load_bot(SHOP).messages.action_failed
    assert answer["buttons"] == [
        {"title": "Talk to a person", "payload": "I want to talk to a person"}
    ]
