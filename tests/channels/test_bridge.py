"""Messaging channels' way in: provider ids become conversations, redelivery is harmless."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.types import ConversationStatus, Role
from channels.bridge import ChannelBridge, Inbound
from channels.runtime import Runtime
from channels.settings import Settings
from channels.store import Store

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


@pytest.fixture
async def runtime(tmp_path: Path, shop_home: Path, shop_bundle: Any) -> Any:
    settings = Settings(
        home=shop_home,
        bot=Path("examples/shop"),
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'store.db'}",
    )
    runtime = await Runtime.start(settings, shop_bundle)
    yield runtime
    await runtime.stop()


async def test_conversation_for_is_one_per_sender_and_channel(tmp_path: Path) -> None:
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 's.db'}")
    try:
        first = await store.conversation_for("telegram", "42", NOW)
        again = await store.conversation_for("telegram", "42", NOW)
        other_channel = await store.conversation_for("slack", "42", NOW)
        other_sender = await store.conversation_for("telegram", "43", NOW)
        assert again.id == first.id
        assert len({first.id, other_channel.id, other_sender.id}) == 3
        assert first.channel == "telegram"
    finally:
        await store.close()


async def test_concurrent_first_contact_makes_one_conversation(tmp_path: Path) -> None:
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 's.db'}")
    try:
        records = await asyncio.gather(
            *(store.conversation_for("whatsapp", "+15551234567", NOW) for _ in range(8))
        )
        assert len({r.id for r in records}) == 1
    finally:
        await store.close()


async def test_a_closed_conversation_is_followed_by_a_new_one(tmp_path: Path) -> None:
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 's.db'}")
    try:
        first = await store.conversation_for("telegram", "42", NOW)
        await store.set_status(first.id, ConversationStatus.CLOSED, reason=None, now=NOW)
        second = await store.conversation_for("telegram", "42", NOW)
        assert second.id != first.id and second.status is ConversationStatus.BOT
        closed = await store.get_conversation(first.id)
        assert closed is not None and closed.status is ConversationStatus.CLOSED
        assert (await store.conversation_for("telegram", "42", NOW)).id == second.id
    finally:
        await store.close()


async def test_external_ids_are_checked(tmp_path: Path) -> None:
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 's.db'}")
    try:
        with pytest.raises(ValueError, match="external_id must have 1 to 200"):
            await store.conversation_for("telegram", "", NOW)
        with pytest.raises(ValueError, match="external_id must have 1 to 200"):
            await store.conversation_for("telegram", "x" * 201, NOW)
    finally:
        await store.close()


async def test_receive_and_answer_and_ignore_redelivery(runtime: Runtime) -> None:
    """A redelivery is not stored twice, and answering it again returns the first answer
    without storing a second one."""
    bridge: ChannelBridge = runtime.bridge
    inbound = Inbound("rest", "customer-7", "how long does delivery take?", "m-1")
    event, created = await bridge.receive(inbound)
    assert created and event.role is Role.CUSTOMER
    replies = await bridge.answer(event)
    assert len(replies) >= 1
    assert all(r.role is Role.BOT and r.payload["in_reply_to"] == event.seq for r in replies)
    assert "deliver" in (replies[0].text or "").lower()
    again, created = await bridge.receive(inbound)  # redelivered: not stored twice
    assert not created and again.seq == event.seq
    assert await bridge.answer(again, redelivered=True) == replies
    stored = await runtime.store.events_after(event.conversation_id, 0, 100)
    assert [e.text for e in stored if e.role is Role.CUSTOMER] == [inbound.text]
    assert sum(1 for e in stored if e.role is Role.BOT) == len(replies)


async def test_no_bot_answer_while_a_person_handles_it(runtime: Runtime) -> None:
    bridge: ChannelBridge = runtime.bridge
    first, _ = await bridge.receive(Inbound("rest", "c-9", "hello", "m-1"))
    await bridge.answer(first)
    await runtime.service.set_status(first.conversation_id, ConversationStatus.WAITING, "test")
    second, _ = await bridge.receive(Inbound("rest", "c-9", "are you there?", "m-2"))
    assert await bridge.answer(second) == []
