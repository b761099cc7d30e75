"""Per-conversation locks: in-process (first come, first served) and Redis (across
processes; two lock objects with their own clients stand for two processes here)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.types import Role
from channels.locks import InProcessLocks, LockUnavailable, RedisLocks
from channels.runtime import Runtime
from channels.settings import Settings


async def _critical(locks: Any, conversation_id: str, log: list[str], name: str) -> None:
    async with locks.hold(conversation_id):
        log.append(f"{name} in")
        await asyncio.sleep(0.05)
        log.append(f"{name} out")


async def test_in_process_lock_serves_waiters_in_call_order() -> None:
    """Callers get the in-process lock one at a time, in the order they asked for it."""
    locks, log = InProcessLocks(), []
    tasks = [asyncio.create_task(_critical(locks, "c1", log, str(i))) for i in range(4)]
    await asyncio.gather(*tasks)
    assert log == [f"{i} {w}" for i in range(4) for w in ("in", "out")]
    assert locks._locks == {}  # dropped when unused


@pytest.fixture
def prefix() -> str:
    return f"frontdesk-test-{uuid.uuid4().hex[:8]}:"


@pytest.fixture
async def two(redis_url: str, prefix: str) -> AsyncIterator[tuple[RedisLocks, RedisLocks]]:
    """Two processes' locks: separate clients on one Redis, short lifetimes."""
    a = RedisLocks(redis_url, ttl_s=0.5, wait_s=3.0, prefix=prefix)
    b = RedisLocks(redis_url, ttl_s=0.5, wait_s=3.0, prefix=prefix)
    yield a, b
    await a.close()
    await b.close()


async def test_redis_lock_excludes_across_clients(two: tuple[RedisLocks, RedisLocks]) -> None:
    """Holders on two clients never overlap in one conversation."""
    a, b = two
    log: list[str] = []
    await asyncio.gather(
        *(
            _critical(locks, "c1", log, f"{n}{i}")
            for i in range(3)
            for n, locks in (("a", a), ("b", b))
        )
    )
    assert len(log) == 12
    for i in range(0, 12, 2):  # every "in" is followed by its own "out"
        assert log[i].endswith(" in") and log[i + 1] == log[i].replace(" in", " out")


async def test_redis_locks_of_different_conversations_are_independent(
    two: tuple[RedisLocks, RedisLocks],
) -> None:
    """Holding one conversation's lock does not delay another's."""
    a, b = two
    async with a.hold("c1"):
        started = time.monotonic()
        async with b.hold("c2"):
            assert time.monotonic() - started < 0.3


async def test_a_crashed_holder_releases_the_lock_by_expiry(
    two: tuple[RedisLocks, RedisLocks],
) -> None:
    """A lock whose holder is gone (taken, never released nor renewed) expires after its
    lifetime and the next waiter gets it."""
    a, b = two
    assert await a.lock("c1").acquire()  # and the "process" dies
    started = time.monotonic()
    async with b.hold("c1"):
        waited = time.monotonic() - started
    assert 0.2 < waited < 2.0


async def test_a_live_holder_renews_its_lock(two: tuple[RedisLocks, RedisLocks]) -> None:
    """A holder working longer than the lock's lifetime keeps it: nobody else gets in."""
    a, b = two
    async with a.hold("c1"):
        await asyncio.sleep(1.2)  # > 2 lifetimes
        assert not await b.lock("c1").acquire(blocking=False)


async def test_waiting_too_long_raises_lock_unavailable(redis_url: str, prefix: str) -> None:
    """A waiter gives up after ``wait_s`` with an error that says why."""
    holder = RedisLocks(redis_url, ttl_s=0.3, wait_s=0.6, prefix=prefix)
    waiter = RedisLocks(redis_url, ttl_s=0.3, wait_s=0.6, prefix=prefix)
    try:
        async with holder.hold("c1"):
            with pytest.raises(LockUnavailable, match="stayed locked"):
                async with waiter.hold("c1"):
                    pass
    finally:
        await holder.close()
        await waiter.close()


async def test_the_answered_fence_is_shared(two: tuple[RedisLocks, RedisLocks]) -> None:
    """What one process marks answered under the lock, the next holder elsewhere reads."""
    a, b = two
    async with a.hold("c1") as held:
        assert held.answered is None and not held.in_order
        await held.mark_answered(5)
    async with b.hold("c1") as held:
        assert held.answered == 5
        await held.mark_answered(3)  # never goes back
    async with a.hold("c1") as held:
        assert held.answered == 5


def test_wait_must_outlast_the_lock_lifetime(redis_url: str) -> None:
    """A waiter that gives up before a dead holder's lock expires is refused when built."""
    with pytest.raises(ValueError, match="must exceed"):
        RedisLocks(redis_url, ttl_s=30, wait_s=10)


# --- the service's order across replicas ----------------------------------------------


@pytest.fixture
async def runtimes(
    tmp_path: Path, shop_home: Path, shop_bundle: Any, redis_url: str
) -> AsyncIterator[tuple[Runtime, Runtime]]:
    """Two runtimes on one store and one Redis, as two replicas would be."""
    settings = Settings(
        home=shop_home,
        bot=Path("examples/shop"),
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'store.db'}",
        redis_url=redis_url,
    )
    a = await Runtime.start(settings, shop_bundle)
    b = await Runtime.start(settings, shop_bundle)
    yield a, b
    await a.stop()
    await b.stop()


async def test_replicas_answer_in_seq_order_when_the_later_message_locks_first(
    runtimes: tuple[Runtime, Runtime],
) -> None:
    """Seq 1 accepted by A and seq 2 by B, and B takes the lock first: B answers 1 and then
    2, and A, coming second, finds 1 answered and says nothing more."""
    a, b = runtimes
    record, _ = await a.service.open("web")
    first, _ = await a.service.accept(record.id, "m1", "where is my order?")
    second, _ = await b.service.accept(record.id, "m2", "what are your opening hours?")
    await b.service.respond(second)
    await a.service.respond(first)
    events = await a.store.events_after(record.id, 0)
    replies = [e.payload.get("in_reply_to") for e in events if e.role is Role.BOT]
    assert replies == [first.seq, second.seq]


async def test_replicas_answering_concurrently_keep_the_order(
    runtimes: tuple[Runtime, Runtime],
) -> None:
    """Messages accepted alternately by two replicas and answered concurrently are each
    answered once, in seq order."""
    a, b = runtimes
    record, _ = await a.service.open("web")
    texts = ["hi", "where is my order?", "how do returns work?", "opening hours?", "thanks"]
    accepted = []
    for i, text in enumerate(texts):
        replica = (a, b)[i % 2]
        event, _ = await replica.service.accept(record.id, f"m{i}", text)
        accepted.append((replica, event))
    await asyncio.gather(*(r.service.respond(e) for r, e in reversed(accepted)))
    events = await a.store.events_after(record.id, 0)
    customer = [e.seq for e in events if e.role is Role.CUSTOMER]
    replies = [e.payload.get("in_reply_to") for e in events if e.role is Role.BOT]
    # each answered once, in order (an escalation would silence the rest: check the prefix)
    assert replies == customer[: len(replies)] and replies


async def test_a_burst_of_waiters_never_runs_the_pool_dry(redis_url: str, prefix: str) -> None:
    """Two "replicas" with 5 Redis connections each, 600 holds queued at once on 20
    conversations: every one is served, one holder per conversation at a time, no
    connection error and no LockUnavailable (waiters queue locally and wait for release
    announcements instead of each polling Redis)."""
    replicas = [
        RedisLocks(redis_url, ttl_s=2.0, wait_s=60.0, prefix=prefix, max_connections=5)
        for _ in range(2)
    ]
    inside: dict[str, int] = {}
    worst = 0
    served = 0

    async def one(locks: RedisLocks, conversation: str) -> None:
        nonlocal worst, served
        async with locks.hold(conversation):
            inside[conversation] = inside.get(conversation, 0) + 1
            worst = max(worst, inside[conversation])
            await asyncio.sleep(0.002)
            inside[conversation] -= 1
            served += 1

    try:
        started = time.monotonic()
        await asyncio.gather(*(one(replicas[n % 2], f"c{n % 20}") for n in range(600)))
        elapsed = time.monotonic() - started
    finally:
        for locks in replicas:
            await locks.close()
    assert served == 600 and worst == 1
    assert elapsed < 45  # 30 holds a conversation, in turn: announced releases, not 20 ms polls


async def test_a_dead_holders_lock_is_taken_over_within_its_ttl(
    redis_url: str, prefix: str
) -> None:
    """A holder that stops renewing (its replica died) blocks the conversation at most
    ttl_s: the heartbeat, not the 30 s it used to be."""
    dead = RedisLocks(redis_url, ttl_s=1.0, wait_s=5.0, prefix=prefix)
    alive = RedisLocks(redis_url, ttl_s=1.0, wait_s=5.0, prefix=prefix)
    try:
        assert await dead.lock("c1").acquire()  # and the replica dies: no renewal
        started = time.monotonic()
        async with alive.hold("c1"):
            waited = time.monotonic() - started
    finally:
        await dead.close()
        await alive.close()
    assert waited <= 1.0 + 0.5  # the ttl, and at most one poll
