"""`frontdesk export`: the store's conversations back out as chat logs for retraining."""

from __future__ import annotations

import asyncio
import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.definition import load_bot
from bot.engine import Engine
from bot.types import ConversationStatus, Role
from channels.actions import ActionMessage, ActionRequest
from channels.bus import InProcessBus
from channels.cli import main
from channels.inference import MicroBatcher
from channels.service import ConversationService
from channels.store import AgentRole, ConversationRecord, Store
from retrieval.bundle import Analysis
from retrieval.chatlog import ChatLog, TurnRole, read_chatlog_jsonl
from retrieval.pairs import dialogue_pairs

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


async def _fill(url: str) -> dict[str, str]:
    """Three conversations: one handed to an agent who tagged an intent, one where nobody
    wrote anything, one older that only the bot answered."""
    store = await Store.open(url)
    try:
        agent = await store.add_agent("ann@shop.example", "Ann", "x", AgentRole.AGENT, T0)
        handed, _ = await store.create_conversation("web", T0)
        await store.append_customer_message(handed.id, "c1", "my lamp arrived broken", T0)
        await store.append_event(
            handed.id, kind="message", role=Role.BOT, text="Sorry! Passing you on.",
            payload={"decision": "escalate"}, now=T0 + timedelta(seconds=1),
        )  # fmt: skip
        await store.set_status(
            handed.id, ConversationStatus.WAITING, reason="asked", now=T0 + timedelta(seconds=2)
        )
        await store.append_event(
            handed.id, kind="message", role=Role.AGENT, text="I'll send a new one today.",
            payload={"agent_id": agent.id}, now=T0 + timedelta(minutes=1),
        )  # fmt: skip
        await store.tag_intent(handed.id, 1, "damaged_item", agent.id, T0 + timedelta(minutes=2))
        silent, _ = await store.create_conversation("web", T0)
        old, _ = await store.create_conversation("telegram", T0 - timedelta(days=30))
        await store.append_customer_message(old.id, "c1", "hi", T0 - timedelta(days=30))
        await store.append_event(
            old.id, kind="message", role=Role.BOT, text="  ",  # an action's blank text
            payload={}, now=T0 - timedelta(days=30),
        )  # fmt: skip
        return {"handed": handed.id, "silent": silent.id, "old": old.id, "agent": agent.id}
    finally:
        await store.close()


def test_export_writes_chat_logs_and_tagged_rows_for_retraining(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    ids = asyncio.run(_fill(f"sqlite+aiosqlite:///{home / 'frontdesk.db'}"))
    out, tags = tmp_path / "logs.jsonl", tmp_path / "tags.csv"
    args = ["export", "--home", str(home), "--out", str(out), "--tags", str(tags), "--json"]
    assert main(args) == 0
    counts = json.loads(capsys.readouterr().out)
    assert counts == {
        "conversations": 2, "turns": 4, "agent_turns": 1, "tags": 1, "out": str(out),
    }  # fmt: skip

    read = read_chatlog_jsonl(out)
    assert read.problems == ()
    by_id = {log.id: log for log in read.logs}
    assert set(by_id) == {ids["handed"], ids["old"]}  # the silent one has nothing to learn
    handed = by_id[ids["handed"]]
    assert handed.channel == "web" and handed.started_at == T0
    assert [(t.role, t.text) for t in handed.turns] == [
        (TurnRole.CUSTOMER, "my lamp arrived broken"),
        (TurnRole.SYSTEM, "Sorry! Passing you on."),  # a hand-over notice, not an answer
        (TurnRole.AGENT, "I'll send a new one today."),
    ]
    assert handed.turns[2].ts == T0 + timedelta(minutes=1)
    assert handed.metadata["status"] == "waiting"
    assert handed.metadata["intent_tags"] == [
        {"text": "my lamp arrived broken", "intent": "damaged_item"}
    ]
    # what `frontdesk train --logs` will index: the agent's answer to the customer
    (pair,) = dialogue_pairs([handed])
    assert "lamp arrived broken" in pair.context and pair.reply == "I'll send a new one today."
    with tags.open(newline="") as handle:
        assert list(csv.reader(handle)) == [
            ["text", "intent"],
            ["my lamp arrived broken", "damaged_item"],
        ]

    # the same store exports the same bytes, so `train --if-stale --logs` does not retrain
    first = out.read_bytes()
    assert main(args) == 0
    capsys.readouterr()
    assert out.read_bytes() == first

    # a blank message is left out (the reader would refuse the whole conversation for it)
    assert [t.text for t in by_id[ids["old"]].turns] == ["hi"]

    # --since keeps the conversations active since then
    assert main(["export", "--home", str(home), "--out", str(out), "--since", "2026-11-01"]) == 0
    assert "exported 1 conversations" in capsys.readouterr().out
    assert [log.id for log in read_chatlog_jsonl(out).logs] == [ids["handed"]]

    # ... and those an agent tagged since then, however old
    async def tag_the_old_one() -> None:
        store = await Store.open(f"sqlite+aiosqlite:///{home / 'frontdesk.db'}")
        try:
            await store.tag_intent(ids["old"], 1, "greet", ids["agent"], T0 + timedelta(days=1))
        finally:
            await store.close()

    asyncio.run(tag_the_old_one())
    since = ["--since", "2026-11-21T00:00:00+00:00", "--tags", str(tags)]
    assert main(["export", "--home", str(home), "--out", str(out), *since]) == 0
    assert [log.id for log in read_chatlog_jsonl(out).logs] == [ids["old"]]
    with tags.open(newline="") as handle:
        assert list(csv.reader(handle))[1:] == [["hi", "greet"]]


def test_export_refuses_bad_input_and_keeps_the_old_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    asyncio.run(_fill(f"sqlite+aiosqlite:///{home / 'frontdesk.db'}"))
    with pytest.raises(SystemExit) as refused:
        main(["export", "--home", str(home), "--out", str(tmp_path / "x"), "--since", "last week"])
    assert refused.value.code == 2
    assert "expected a date like 2026-11-01" in capsys.readouterr().err
    missing = tmp_path / "no-such-folder" / "logs.jsonl"
    assert main(["export", "--home", str(home), "--out", str(missing)]) == 2
    assert "cannot write chat logs" in capsys.readouterr().err
    for same in (["--tags", str(tmp_path / "x")], ["--tags", str(tmp_path)]):
        assert main(["export", "--home", str(home), "--out", str(tmp_path / "x"), *same]) == 2
        assert "give" in capsys.readouterr().err
    assert main(["export", "--home", str(tmp_path / "nowhere"), "--out", str(missing)]) == 2
    assert "no conversation store at" in capsys.readouterr().err
    kept = tmp_path / "kept.jsonl"
    kept.write_text("previous export\n")
    bad_tags = tmp_path / "no-such-folder" / "tags.csv"
    code = main(["export", "--home", str(home), "--out", str(kept), "--tags", str(bad_tags)])
    assert code == 2 and "cannot write intent tags" in capsys.readouterr().err
    assert kept.read_text() == "previous export\n"  # nothing replaced


def test_export_writes_each_page_before_reading_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The export streams: a conversation is written before the store's next page is read,
    so memory does not grow with the store."""
    from channels import chatlog_export
    from retrieval.chatlog import chatlog_line

    url = f"sqlite+aiosqlite:///{tmp_path / 'frontdesk.db'}"
    ids = asyncio.run(_fill(url))
    monkeypatch.setattr(chatlog_export, "PAGE", 1)
    happened: list[str] = []

    def line(chat: ChatLog) -> str:
        happened.append(f"write {chat.id}")
        return chatlog_line(chat)

    monkeypatch.setattr(chatlog_export, "chatlog_line", line)
    out = tmp_path / "logs.jsonl"

    async def export() -> chatlog_export.ExportResult:
        store = await Store.open(url)
        read_page = store.conversations_page

        async def page(**kwargs: Any) -> list[ConversationRecord]:
            happened.append("page")
            return await read_page(**kwargs)

        monkeypatch.setattr(store, "conversations_page", page)
        try:
            return await chatlog_export.export_logs(store, out)
        finally:
            await store.close()

    result = asyncio.run(export())
    assert result.conversations == 2
    writes = [h for h in happened if h.startswith("write")]
    assert sorted(writes) == sorted([f"write {ids['handed']}", f"write {ids['old']}"])
    assert happened.count("page") == 4  # three conversations a page each, then an empty page
    assert "page" in happened[happened.index(writes[0]) :]  # written before the last read
    assert [log.id for log in read_chatlog_jsonl(out).logs] == [w.split()[1] for w in writes]
    assert not (tmp_path / "logs.jsonl.partial").exists()


# --- roles: the bot's answers, its hand-over notices and the agents' replies ----------------

SHOP = load_bot(Path(__file__).resolve().parents[2] / "examples" / "shop")
SHIPPING = "what does shipping cost?"
SHADES = "do you sell replacement lamp shades?"
SHADES_AGAIN = "replacement shades for the brass lamp, do you sell those?"
SHADES_ANSWER = "Yes: linen replacement shades in three sizes, €24 each, under Lighting."
ORDER_AGAIN = "Can I add one to my order 1042?"
ORDER_ANSWER = "Done: I've added a medium shade to order 1042, it ships with the rest."


class ScriptedModel:
    """Sure it is ``shipping_costs`` for :data:`SHIPPING`; unsure about anything else."""

    version = "scripted"

    def analyze(
        self, texts: list[str], contexts: list[str] | None = None, k: int = 5
    ) -> list[Analysis]:
        return [
            Analysis((("shipping_costs", 0.97),), 0.0, ())
            if text == SHIPPING
            else Analysis((("greet", 0.2), ("returns", 0.1)), 0.9, ())
            for text in texts
        ]


class NoActions:
    async def run(self, request: ActionRequest) -> list[ActionMessage]:
        raise AssertionError(f"no action expected, got {request.action}")

    async def aclose(self) -> None:
        pass


async def _handed_over(url: str) -> str:
    """A conversation the demo bot's engine and the real service handle: an answer, then a
    question it cannot answer twice (it asks back, then hands over with its notices), then
    an agent who takes it and answers, and answers a follow-up."""
    monday_morning = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # 10:00 in Berlin: open
    store = await Store.open(url)
    batcher = MicroBatcher(ScriptedModel())
    batcher.start()
    service = ConversationService(
        store, Engine(SHOP), batcher, NoActions(), InProcessBus(), clock=lambda: monday_morning
    )
    try:
        agent = await store.add_agent("ann@shop.example", "Ann", "x", AgentRole.AGENT, T0)
        record, _ = await service.open("web")
        for n, text in enumerate([SHIPPING, SHADES, SHADES_AGAIN]):
            event, _ = await service.accept(record.id, f"c{n}", text)
            await service.respond(event)
        await service.set_status(record.id, ConversationStatus.AGENT, "taken")
        for text in (SHADES_ANSWER, ORDER_ANSWER):
            if text == ORDER_ANSWER:
                await service.accept(record.id, "c3", ORDER_AGAIN)
            await store.append_event(
                record.id, kind="message", role=Role.AGENT, text=text,
                payload={"agent_id": agent.id}, now=monday_morning,
            )  # fmt: skip
        return record.id
    finally:
        await batcher.stop()
        await store.close()


def test_export_writes_hand_over_notices_as_system_turns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The service's hand-over messages (decision `escalate`, then the queue notice,
    `handoff`) are exported as `system` turns; the bot's answer and its question back stay
    `bot`, the agent's replies `agent`. The pairs the next training indexes answer the
    customer's questions from before the hand-over, never a notice."""
    home = tmp_path / "home"
    home.mkdir()
    conversation = asyncio.run(_handed_over(f"sqlite+aiosqlite:///{home / 'frontdesk.db'}"))
    out = tmp_path / "logs.jsonl"
    assert main(["export", "--home", str(home), "--out", str(out)]) == 0
    capsys.readouterr()

    read = read_chatlog_jsonl(out)
    assert read.problems == ()
    (log,) = read.logs
    assert log.id == conversation
    roles = [turn.role for turn in log.turns]
    texts = [turn.text for turn in log.turns]
    assert roles == [
        TurnRole.CUSTOMER, TurnRole.BOT,  # a question the bot answers
        TurnRole.CUSTOMER, TurnRole.BOT,  # one it is unsure about: it asks back
        TurnRole.CUSTOMER, TurnRole.SYSTEM, TurnRole.SYSTEM,  # unsure again: hands over
        TurnRole.AGENT, TurnRole.CUSTOMER, TurnRole.AGENT,
    ]  # fmt: skip
    # each message the bot chose names the model version that chose it; people's do not
    models = [turn.model for turn in log.turns]
    assert models == [
        None, "scripted", None, "scripted", None, "scripted", "scripted", None, None, None,
    ]  # fmt: skip
    shipping = {variant.text for variant in SHOP.responses["utter_shipping_costs"].variants}
    assert texts[1] in shipping
    assert texts[3] in {SHOP.messages.clarify, SHOP.messages.out_of_scope}
    assert texts[5] == SHOP.messages.escalate
    assert texts[6].startswith("You are number 1 in the queue")
    assert [t for t, r in zip(texts, roles, strict=True) if r is TurnRole.AGENT] == [
        SHADES_ANSWER, ORDER_ANSWER,
    ]  # fmt: skip

    first, second = dialogue_pairs([log])
    assert first.reply == SHADES_ANSWER
    # the customer's questions before the hand-over, newest first: no bot turn, no notice
    assert first.context == (
        f"customer: {SHADES_AGAIN} [SEP] customer: {SHADES} [SEP] customer: {SHIPPING}"
    )
    assert second.reply == ORDER_ANSWER
    assert second.context == (
        f"customer: {ORDER_AGAIN} [SEP] agent: {SHADES_ANSWER} [SEP] customer: {SHADES_AGAIN}"
    )
