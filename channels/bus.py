"""The bus: pushes live events of a conversation to its subscribers (DESIGN §5).

It only pushes; a subscriber that misses an event (a full queue, a Redis outage) sees
``Subscription.overflowed`` set and recovers what it missed from the store by sequence
number, so a lost bus message costs latency, not data.

:class:`InProcessBus` serves one process; :class:`channels.redis_bus.RedisBus` has the same
interface and carries events between processes. Both deliver to the local subscribers through
a :class:`Fanout`. Topics are conversation ids; :data:`QUEUE_TOPIC` carries the console's
queue changes.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import Any, Final, Protocol

log = logging.getLogger(__name__)

Frame = dict[str, Any]

QUEUE_TOPIC: Final = "__queue__"
"""The topic of the escalation queue's changes (no conversation has this id)."""


class Subscription:
    """One subscriber's queue of a topic's frames."""

    def __init__(self, fanout: Fanout, conversation_id: str, maxsize: int) -> None:
        self.fanout = fanout
        self.conversation_id = conversation_id
        self.queue: asyncio.Queue[Frame] = asyncio.Queue(maxsize)
        self.overflowed = False
        """Set when frames were dropped for this subscriber: replay from the store, then
        clear it."""

    async def get(self) -> Frame:
        return await self.queue.get()

    def close(self) -> None:
        self.fanout.unsubscribe(self)

    def push(self, frame: Frame) -> None:
        try:
            self.queue.put_nowait(frame)
        except asyncio.QueueFull:
            self.overflowed = True
            log.warning(
                "bus queue full for conversation %s; subscriber must replay", self.conversation_id
            )


class Fanout:
    """The local subscribers of each topic, and delivery to them."""

    def __init__(self, queue_size: int) -> None:
        self.queue_size = queue_size
        self._subs: defaultdict[str, set[Subscription]] = defaultdict(set)

    def subscribe(self, conversation_id: str) -> Subscription:
        sub = Subscription(self, conversation_id, self.queue_size)
        self._subs[conversation_id].add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.conversation_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.conversation_id]

    def has(self, conversation_id: str) -> bool:
        return conversation_id in self._subs

    def deliver(self, conversation_id: str, frame: Frame) -> None:
        for sub in list(self._subs.get(conversation_id, ())):
            sub.push(frame)

    def lost(self, wake: Frame) -> None:
        """Frames may have been lost for every subscriber: flag them all and push ``wake``
        so that each consumer notices now rather than at its topic's next event."""
        for subs in list(self._subs.values()):
            for sub in list(subs):
                sub.overflowed = True
                if not sub.queue.full():
                    sub.queue.put_nowait(wake)


class Bus(Protocol):
    """What the service and the channels need of a bus."""

    def subscribe(self, conversation_id: str) -> Subscription: ...

    async def publish(self, conversation_id: str, frame: Frame) -> None: ...

    async def close(self) -> None: ...


class InProcessBus(Fanout):
    """The bus of a single server process (the default)."""

    def __init__(self, queue_size: int = 256) -> None:
        super().__init__(queue_size)

    async def publish(self, conversation_id: str, frame: Frame) -> None:
        self.deliver(conversation_id, frame)

    async def close(self) -> None:
        """Nothing to release (symmetry with the Redis bus)."""
