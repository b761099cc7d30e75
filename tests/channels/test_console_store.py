"""The store's console tables and queries, on SQLite and (when reachable) PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from bot.types import ConversationStatus as S
from channels.store import AgentExists, AgentRole, Store

# the empty-database fixtures of the store's own tests (SQLite and PostgreSQL)
from tests.channels.test_store import postgres_url, url  # noqa: F401

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


@pytest.fixture
async def store(url: str) -> AsyncIterator[Store]:  # noqa: F811
    opened = await Store.open(url)
    yield opened
    await opened.close()


async def agent(store: Store, name: str, role: AgentRole = AgentRole.AGENT) -> str:
    return (await store.add_agent(f"{name}@x.example", name, "hash", role, T0)).id


async def waiting(
    store: Store, text: str = "help", at: datetime = T0, reason: str = "requested"
) -> str:
    record, _ = await store.create_conversation("web", at)
    await store.append_customer_message(record.id, "c1", text, at)
    await store.set_status(record.id, S.WAITING, reason=reason, now=at)
    return record.id


async def test_emails_are_unique_in_any_case(store: Store) -> None:
    """A second agent with the same email (in other letters' case) is refused."""
    await store.add_agent("Ann@X.example", "Ann", "hash", AgentRole.ADMIN, T0)
    with pytest.raises(AgentExists):
        await store.add_agent("ann@x.example ", "Ann 2", "hash", AgentRole.AGENT, T0)
    found = await store.agent_login("ANN@x.example")
    assert found is not None and found[0].role is AgentRole.ADMIN and found[1] == "hash"


@pytest.mark.parametrize("email", ["notanemail", "ann@localhost", "a b@x.example", "@x.example"])
async def test_an_email_that_is_not_one_is_refused(store: Store, email: str) -> None:
    with pytest.raises(ValueError, match="expected an address like"):
        await store.add_agent(email, "Ann", "hash", AgentRole.AGENT, T0)
    assert await store.agent_login(email) is None


async def test_sessions_expire_and_end(store: Store) -> None:
    """A session finds its agent until it expires or is deleted."""
    ann = await agent(store, "ann")
    await store.create_session("h1", ann, T0, T0 + timedelta(hours=1))
    assert (await store.session_agent("h1", T0 + timedelta(minutes=59))) is not None
    assert await store.session_agent("h1", T0 + timedelta(hours=1)) is None
    assert await store.session_agent("other", T0) is None
    await store.delete_session("h1")
    assert await store.session_agent("h1", T0) is None


async def test_queue_lists_waiting_conversations_longest_first(store: Store) -> None:
    """The queue has the waiting conversations with their reason and last customer words."""
    late = await waiting(store, "second", T0 + timedelta(minutes=2), "low_confidence")
    early = await waiting(store, "first", T0)
    await store.create_conversation("web", T0)  # with the bot: not queued
    queue = await store.waiting_queue()
    assert [(e.conversation_id, e.reason, e.last_customer_text) for e in queue] == [
        (early, "requested", "first"),
        (late, "low_confidence", "second"),
    ]
    assert queue[0].waiting_since == T0


async def test_racing_takes_only_one_wins(store: Store) -> None:
    """Ten takes of one waiting conversation at once: one status event, one assignment."""
    cid = await waiting(store)
    agents = [await agent(store, f"a{i}") for i in range(10)]
    results = await asyncio.gather(*(store.take_conversation(cid, a, T0) for a in agents))
    winners = [a for a, r in zip(agents, results, strict=True) if r is not None]
    assert len(winners) == 1
    assert await store.assigned_agent(cid) == winners[0]
    events = await store.events_after(cid, 0)
    assert [e.payload["status"] for e in events if e.kind == "status"] == ["waiting", "agent"]
    assert await store.waiting_queue() == []
    assert [c.id for c in await store.agent_conversations(winners[0])] == [cid]


async def test_intent_tags_label_customer_turns(store: Store) -> None:
    """A tag names a customer turn; tagging it again replaces the label; other turns fail."""
    cid = await waiting(store)
    ann = await agent(store, "ann")
    await store.tag_intent(cid, 1, "order_status", ann, T0)
    await store.tag_intent(cid, 1, "lost_parcel", ann, T0)
    assert [(t.seq, t.intent) for t in await store.intent_tags_of(cid)] == [(1, "lost_parcel")]
    with pytest.raises(ValueError, match="not a customer message"):
        await store.tag_intent(cid, 2, "x", ann, T0)  # seq 2 is the status event


async def test_desk_numbers(store: Store) -> None:
    """Waits run from `waiting` to `agent`, handle times from `agent` to `bot`/`closed`."""
    ann = await agent(store, "ann")
    first = await waiting(store, at=T0)
    await store.take_conversation(first, ann, T0 + timedelta(seconds=60))
    await store.set_status(first, S.BOT, reason=None, now=T0 + timedelta(seconds=360))
    second = await waiting(store, at=T0, reason="low_confidence")
    await store.take_conversation(second, ann, T0 + timedelta(seconds=120))
    await store.set_status(second, S.CLOSED, reason=None, now=T0 + timedelta(seconds=220))
    await store.rate_conversation(second, 5, T0 + timedelta(seconds=230))
    await waiting(store, at=T0)
    numbers = await store.desk_numbers(T0 - timedelta(hours=1))
    assert numbers.queue_length == 1 and numbers.taken == 2
    assert numbers.average_wait_s == 90.0 and numbers.average_handle_s == 200.0
    assert dict(numbers.escalations) == {"low_confidence": 1, "requested": 2}
    assert (numbers.ratings, numbers.average_rating) == (1, 5.0)
    later = await store.desk_numbers(T0 + timedelta(hours=1))
    assert later.taken == 0 and later.queue_length == 1 and dict(later.escalations) == {}
