"""The Redis bus: the in-process bus's interface across processes (two buses stand for two
server processes here; tests/channels/test_multi_replica.py runs real ones)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator

import pytest

from channels.bus import QUEUE_TOPIC, Frame, Subscription
from channels.errors import NotReady
from channels.redis_bus import RedisBus

pytest.importorskip("redis")

WAIT_S = 5.0


@pytest.fixture
def prefix() -> str:
    """A private channel prefix: other test runs on the same Redis do not interfere."""
    return f"frontdesk-test-{uuid.uuid4().hex[:8]}:conv:"


@pytest.fixture
async def buses(redis_url: str, prefix: str) -> AsyncIterator[tuple[RedisBus, RedisBus]]:
    a = await RedisBus.connect(redis_url, prefix=prefix, backoff_s=0.05)
    b = await RedisBus.connect(redis_url, prefix=prefix, backoff_s=0.05, queue_size=4)
    yield a, b
    await a.close()
    await b.close()


async def _get(sub: Subscription) -> Frame:
    return await asyncio.wait_for(sub.get(), WAIT_S)


async def _nothing(sub: Subscription, wait_s: float = 0.3) -> None:
    await asyncio.sleep(wait_s)
    assert sub.queue.empty(), sub.queue.get_nowait()


async def test_a_frame_reaches_the_other_process_and_the_own_once(
    buses: tuple[RedisBus, RedisBus],
) -> None:
    """A publish reaches the other bus's subscribers through Redis and the publisher's own
    subscribers directly, each exactly once (its echo from Redis is skipped)."""
    a, b = buses
    local, remote = a.subscribe("c1"), b.subscribe("c1")
    await a.publish("c1", {"type": "message", "seq": 1, "text": "hi"})
    assert await _get(remote) == {"type": "message", "seq": 1, "text": "hi"}
    assert await _get(local) == {"type": "message", "seq": 1, "text": "hi"}
    await _nothing(local)


async def test_fan_out_to_every_local_subscriber_of_the_topic_only(
    buses: tuple[RedisBus, RedisBus],
) -> None:
    """Every subscriber of a conversation in a process gets the frame; other conversations'
    subscribers get nothing."""
    a, b = buses
    subs = [b.subscribe("c1") for _ in range(3)]
    other = b.subscribe("c2")
    await a.publish("c1", {"type": "typing", "role": "bot"})
    for sub in subs:
        assert (await _get(sub))["type"] == "typing"
    await _nothing(other)


async def test_frames_arrive_in_publish_order(buses: tuple[RedisBus, RedisBus]) -> None:
    """Frames published one after another by a process arrive in that order."""
    a, b = buses
    sub = b.subscribe("c1")
    for seq in range(1, 4):
        await a.publish("c1", {"type": "message", "seq": seq})
    assert [(await _get(sub))["seq"] for _ in range(3)] == [1, 2, 3]


async def test_closed_subscription_gets_nothing(buses: tuple[RedisBus, RedisBus]) -> None:
    """After close() a subscription receives no more frames and the topic is forgotten."""
    a, b = buses
    sub = b.subscribe("c1")
    sub.close()
    assert not b._fanout.has("c1")
    await a.publish("c1", {"type": "message", "seq": 1})
    await _nothing(sub)


async def test_a_full_queue_flags_overflow(buses: tuple[RedisBus, RedisBus]) -> None:
    """A subscriber that does not read is flagged ``overflowed`` (it replays from the store)
    instead of blocking the bus; what fit in its queue is kept."""
    a, b = buses  # b's queues hold 4 frames
    slow, other = b.subscribe("c1"), b.subscribe("c2")
    for seq in range(1, 7):
        await a.publish("c1", {"type": "message", "seq": seq})
    await a.publish("c2", {"type": "message", "seq": 1})
    assert (await _get(other))["seq"] == 1  # c1's frames were handled before it
    assert slow.overflowed
    assert [slow.queue.get_nowait()["seq"] for _ in range(4)] == [1, 2, 3, 4]


async def test_the_queue_topic_works_like_a_conversation(buses: tuple[RedisBus, RedisBus]) -> None:
    """The console's queue topic is carried like any conversation's."""
    a, b = buses
    sub = b.subscribe(QUEUE_TOPIC)
    await a.publish(QUEUE_TOPIC, {"type": "queue", "conversation_id": "c1", "status": "waiting"})
    assert (await _get(sub))["conversation_id"] == "c1"


async def test_reconnects_after_losing_redis_and_flags_subscribers(
    buses: tuple[RedisBus, RedisBus], redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """When its subscriber connection is killed, a bus logs it, reconnects, flags its
    subscribers ``overflowed`` and wakes them (frames meanwhile are lost), and carries frames
    again afterwards."""
    import redis.asyncio as aioredis

    a, b = buses
    sub = b.subscribe("c1")
    admin = aioredis.Redis.from_url(redis_url)
    try:
        clients = await admin.client_list(_type="pubsub")
        ids = [c["id"] for c in clients if c.get("name") == b.client_name]
        assert ids, f"no pubsub connection named {b.client_name}"
        with caplog.at_level(logging.WARNING, logger="channels.redis_bus"):
            await admin.client_kill_filter(_id=ids[0])
            woken = await _get(sub)  # pushed once the bus is back
    finally:
        await admin.aclose()
    assert woken["type"] == "typing"
    assert sub.overflowed
    assert b.reconnects == 1 and b.connected
    assert "subscriber connection" in caplog.text and "reconnected" in caplog.text
    sub.overflowed = False  # the consumer replayed
    await a.publish("c1", {"type": "message", "seq": 7})
    assert (await _get(sub))["seq"] == 7


async def test_publish_without_redis_delivers_locally_and_does_not_raise(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With Redis down a publish still reaches the process's own subscribers and only logs:
    the bus pushes, the store keeps the data."""
    bus = RedisBus("redis://127.0.0.1:1/0", publish_timeout_s=0.5)  # not started
    try:
        sub = bus.subscribe("c1")
        with caplog.at_level(logging.WARNING, logger="channels.redis_bus"):
            await bus.publish("c1", {"type": "message", "seq": 1})
        assert (await _get(sub))["seq"] == 1
        assert "could not publish" in caplog.text
    finally:
        await bus.close()


async def test_connect_to_an_unreachable_redis_is_refused_with_advice() -> None:
    """Starting with a Redis that does not answer fails fast and says what to do."""
    with pytest.raises(NotReady, match="FRONTDESK_REDIS_URL"):
        await RedisBus.connect("redis://127.0.0.1:1/0", ready_timeout_s=0.5)
