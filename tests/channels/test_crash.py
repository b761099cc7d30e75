"""kill -9 under load (SQLite, one process): every acked message is answered after the
restart, none twice (issue 25's deterministic reproduction)."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from bot.types import Role
from channels.store import Store
from tests.channels.replicas import one_server
from tests.channels.test_recovery import QUESTIONS
from tests.channels.test_ws import hello

pytestmark = pytest.mark.slow


async def _send_and_wait_for_acks(address: str) -> str:
    """Twelve messages on one widget socket; returns once all are acked (stored)."""
    ws, welcome = await hello(address)
    for n, text in enumerate(QUESTIONS):
        await ws.send(json.dumps({"type": "message", "client_id": f"m{n}", "text": text}))
    acked: set[str] = set()
    async with asyncio.timeout(30):
        while len(acked) < len(QUESTIONS):
            frame = json.loads(await ws.recv())
            if frame["type"] == "ack":
                acked.add(frame["client_id"])
    return str(welcome["conversation_id"])


async def _answers(url: str, conversation_id: str) -> tuple[list[int], Counter[int]]:
    """The customer messages' seqs, and how many answers each got."""
    store = await Store.open(url)
    try:
        events = await store.events_after(conversation_id, 0)
    finally:
        await store.close()
    asked = [e.seq for e in events if e.role is Role.CUSTOMER]
    answers = Counter(
        int(e.payload["in_reply_to"])
        for e in events
        if e.role is Role.BOT and e.payload.get("decision") in ("reply", "clarify", "error")
    )
    return asked, answers


async def test_kill_9_after_the_acks_then_restart_answers_every_message_once(
    shop_home: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    shutil.copytree(shop_home / "models", home / "models")
    url = f"sqlite+aiosqlite:///{home / 'frontdesk.db'}"
    with one_server(home, log_path=tmp_path / "first.log") as first:
        conversation = await _send_and_wait_for_acks(first.address)
        first.process.kill()  # kill -9: whatever was in flight is lost
        first.process.wait(10)
    _, before = await _answers(url, conversation)
    with one_server(home, log_path=tmp_path / "second.log"):
        async with asyncio.timeout(10):  # the bound: answered within 10 s
            # another process writes the store: only polling it shows its progress
            while len((await _answers(url, conversation))[1]) < len(QUESTIONS):  # noqa: ASYNC110
                await asyncio.sleep(0.2)
        asked, after = await _answers(url, conversation)
    assert len(asked) == len(QUESTIONS)  # every acked message is stored ...
    assert sorted(after) == asked  # ... and answered ...
    assert set(after.values()) == {1}  # ... exactly once
    assert sum(before.values()) < len(QUESTIONS)  # the kill did leave some unanswered
