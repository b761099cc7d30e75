"""The loop an operator runs, end to end with the real components: the demo bot is trained
and served; a customer asks what it cannot answer and asks for a person; an agent answers
in the console; `frontdesk export` and `frontdesk train --logs` make a new bundle of it;
the server swaps it in; and the next customer who asks the same gets the agent's answers
from the bot.

Nothing here is tuned for the test: default training arguments, the demo's bot.yml
thresholds, the served bundle's own fitted reply threshold."""

from __future__ import annotations

import asyncio
import io
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from pydantic import SecretStr
from websockets.asyncio.client import ClientConnection

from bot.definition import load_bot
from channels.chatlog_export import NOTICE_DECISIONS
from channels.cli import main
from channels.settings import Settings
from retrieval.bundle import Bundle
from retrieval.chatlog import ChatLog, TurnRole, read_chatlog_jsonl
from retrieval.pairs import dialogue_pairs, message_window
from retrieval.registry import Registry
from tests.channels.server import running_server
from tests.channels.test_console import Agent, logged_in
from tests.channels.test_reload import wait_for_model
from training.pipeline import train_bot

pytestmark = pytest.mark.slow

Frame = dict[str, Any]
PASSWORD = "correct horse battery"
ASK_FOR_A_PERSON = "I want to talk to a person"

# Two questions the demo cannot answer: neither examples/shop/bot.yml nor its
# dialogues.jsonl mentions lamp shades or buying back used furniture.
QUESTIONS = (
    "Do you sell replacement lamp shades?",
    "Do you buy back second-hand furniture?",
)
ANSWERS = (
    "Yes! Linen replacement shades for all our lamps are in the Lighting section, in three "
    "sizes from €19. Measure the bottom width of your old shade to pick the right one.",
    "We do: through our Second Round scheme we buy back Northwind furniture in good "
    "condition for store credit. Send us a few photos through the Contact page and we'll "
    "make you an offer within 3 working days.",
)
# The same questions in other words, asked later by someone else.
PARAPHRASES = (
    "Replacement lamp shades: do you sell them?",
    "Second-hand furniture, do you buy it back?",
)


class Widget:
    """A customer's chat widget: reads every frame the server sends, in the background."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.frames: list[Frame] = []
        self._arrived = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, address: str) -> tuple[Widget, str]:
        ws = await websockets.connect(f"ws://{address}/ws/chat")
        await ws.send(json.dumps({"type": "hello"}))
        welcome = json.loads(await ws.recv())
        assert welcome["type"] == "welcome", welcome
        return cls(ws), welcome["conversation_id"]

    async def _read(self) -> None:
        async for raw in self.ws:
            self.frames.append(json.loads(raw))
            self._arrived.set()

    async def wait_for(self, wanted: Callable[[Frame], bool], limit_s: float = 60) -> Frame:
        async with asyncio.timeout(limit_s):
            while True:
                for frame in self.frames:
                    if wanted(frame):
                        return frame
                self._arrived.clear()
                await self._arrived.wait()

    async def say(self, client_id: str, text: str) -> int:
        """Send a message; its seq once the server stored it."""
        await self.ws.send(json.dumps({"type": "message", "client_id": client_id, "text": text}))
        ack = await self.wait_for(lambda f: f["type"] == "ack" and f["client_id"] == client_id)
        return int(ack["seq"])

    async def close(self) -> None:
        await self.ws.close()
        await self._reader


def _replied_to(seq: int) -> Callable[[Frame], bool]:
    return lambda f: f["type"] == "message" and f["role"] == "bot" and f.get("in_reply_to") == seq


def _agent_said(text: str) -> Callable[[Frame], bool]:
    return lambda f: f["type"] == "message" and f["role"] == "agent" and f["text"] == text


def _status(status: str) -> Callable[[Frame], bool]:
    return lambda f: f["type"] == "status" and f["status"] == status


async def _first_customer_and_agent(address: str) -> dict[str, Any]:
    """Step 2: the customer asks the two questions and for a person; an agent takes the
    conversation in the console and answers each question. Returns what both saw."""
    widget, conversation = await Widget.open(address)
    try:
        for n, question in enumerate(QUESTIONS):
            seq = await widget.say(f"q{n}", question)
            await widget.wait_for(_replied_to(seq))  # whatever the demo makes of it
        # the second question may already have handed over (two unsure turns in a row); the
        # customer asks anyway, and the bot stays silent once the conversation waits
        await widget.say("person", ASK_FOR_A_PERSON)
        await widget.wait_for(_status("waiting"))

        agent: Agent = await logged_in(address, "ann@shop.example")
        queue = (await agent.get("/console/api/queue")).json()
        assert conversation in [entry["conversation_id"] for entry in queue["waiting"]], queue
        taken = await agent.post(f"/console/api/conversations/{conversation}/take")
        assert taken.status_code == 200, taken.text
        for answer in ANSWERS:
            sent = await agent.post(
                f"/console/api/conversations/{conversation}/messages", {"text": answer}
            )
            assert sent.status_code == 200, sent.text
            # the customer reads it live in the widget
            await widget.wait_for(_agent_said(answer))
        history = (await agent.get(f"/console/api/conversations/{conversation}")).json()
        closed = await agent.post(f"/console/api/conversations/{conversation}/close")
        assert closed.status_code == 200, closed.text
        await widget.wait_for(_status("closed"))
    finally:
        await widget.close()
    return {"conversation": conversation, "history": history, "frames": widget.frames}


async def _new_customer(address: str, version: str) -> list[list[Frame]]:
    """Step 4: once the server serves ``version``, new customers ask the paraphrases over
    the REST channel, each in a conversation of their own (a second question in the same
    conversation is read with the first one in its window: see the issue notes); the
    bot's replies to each."""
    async with httpx.AsyncClient(base_url=f"http://{address}", timeout=60) as http:
        await wait_for_model(http, address, version)  # the server follows `current` (hot swap)
        replies = []
        for n, question in enumerate(PARAPHRASES):
            response = await http.post(
                "/webhooks/rest/webhook", json={"sender": f"new-customer-{n}", "message": question}
            )
            assert response.status_code == 200, response.text
            replies.append(response.json())
    return replies


def _expected_roles(history: dict[str, Any]) -> list[tuple[TurnRole, str]]:
    """What the export should write for the console's history of the conversation: every
    message with text, the bot's hand-over messages as system notices."""
    expected = []
    for event in history["events"]:
        if event["kind"] != "message" or not (event["text"] or "").strip():
            continue
        role = TurnRole(event["role"])
        if role is TurnRole.BOT and event["payload"].get("decision") in NOTICE_DECISIONS:
            role = TurnRole.SYSTEM
        expected.append((role, event["text"]))
    return expected


def _scores(bundle_path: Path, conversation: list[str]) -> str:
    """The bundle's view of each message of ``conversation`` as one customer asks them in
    turn (with the window the server reads) and asked alone, for a failure message."""
    bundle = Bundle.load(bundle_path)
    lines = [f"bundle {bundle.version}: reply threshold {bundle.reply_calibration.threshold}"]

    def describe(text: str, window: str) -> None:
        (analysis,) = bundle.analyze([text], [window])
        lines.append(f"{text!r} with the window {window!r}:")
        lines.append(f"  out of scope {analysis.out_of_scope:.3f}")
        support = analysis.support or (None,) * len(analysis.intents)
        for (name, probability), fit in list(zip(analysis.intents, support, strict=True))[:3]:
            lines.append(f"  intent {name}: probability {probability:.3f}, support {fit}")
        for reply in analysis.replies:
            lines.append(
                f"  reply {reply.score:.3f} from {reply.conversation_id} "
                f"(asked {reply.question!r}): {reply.text[:60]!r}"
            )

    history: list[tuple[str, str]] = []
    for text in conversation:
        window = message_window(history, text)
        describe(text, window)
        if history:
            describe(text, message_window([], text))
        history.append(("customer", text))
    return "\n".join(lines)


@pytest.mark.timeout(900)  # two trainings with the default arguments on 2 CPU cores
def test_an_agents_answers_become_the_bots_after_export_and_retraining(
    tmp_path: Path, shop_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("FRONTDESK_HOME", str(home))
    registry = Registry(home / "models")

    # 1. the demo bot trained with the default arguments and served, with one agent
    first = train_bot(shop_copy, registry, progress=False)
    assert registry.current_version() == first.version == "v0001"
    monkeypatch.setattr(sys, "stdin", io.StringIO(PASSWORD + "\n"))
    add = ["agents", "add", "--home", str(home), "--email", "ann@shop.example", "--name", "Ann"]
    assert main([*add, "--password-stdin"]) == 0
    settings = Settings(
        home=home,
        bot=shop_copy,
        secret_key=SecretStr("k" * 40),
        console_poll_s=0.2,
        reload_interval_s=0.2,
    )
    with running_server(settings) as address:
        # 2. a customer the demo cannot help, an agent who can
        seen = asyncio.run(_first_customer_and_agent(address))
        conversation = seen["conversation"]
        agents_said = [f["text"] for f in seen["frames"] if f.get("role") == "agent"]
        assert agents_said == list(ANSWERS)

        # 3. export the store as chat logs, train on the demo's and the new logs
        export = tmp_path / "new_chats.jsonl"
        assert main(["export", "--home", str(home), "--out", str(export)]) == 0
        read = read_chatlog_jsonl(export)
        assert read.problems == ()
        logs: dict[str, ChatLog] = {log.id: log for log in read.logs}
        exported = [(turn.role, turn.text) for turn in logs[conversation].turns]
        assert exported == _expected_roles(seen["history"])
        assert [text for role, text in exported if role is TurnRole.CUSTOMER] == [
            *QUESTIONS,
            ASK_FOR_A_PERSON,
        ]
        assert [text for role, text in exported if role is TurnRole.AGENT] == list(ANSWERS)
        assert any(role is TurnRole.SYSTEM for role, _ in exported)  # at least the queue notice
        pairs = dialogue_pairs([logs[conversation]])
        assert [pair.reply for pair in pairs] == list(ANSWERS)
        assert all(QUESTIONS[0] in pair.context or QUESTIONS[1] in pair.context for pair in pairs)

        demo_logs = shop_copy / "dialogues.jsonl"
        train = ["train", "--bot", str(shop_copy), "--home", str(home)]
        assert main([*train, "--logs", str(demo_logs), "--logs", str(export)]) == 0
        assert registry.current_version() == "v0002"

        # 4. someone new asks the same in other words, and gets the agent's answers
        replies = asyncio.run(_new_customer(address, "v0002"))

    current = registry.current_path()
    assert current is not None
    got = [[reply["text"] for reply in said] for said in replies]
    assert got == [[answer] for answer in ANSWERS], (
        f"the new customer got {json.dumps(replies, indent=1, ensure_ascii=False)}\n"
        f"{_scores(current, list(PARAPHRASES))}\n"
        f"bot.yml thresholds: {load_bot(shop_copy).thresholds}"
    )
