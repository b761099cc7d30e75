"""The in-process bus: pushes live events of a conversation to its subscribers.

It only pushes; a subscriber that misses an event (a full queue) recovers it from the store
by sequence number, so a lost bus message costs latency, not data (DESIGN §5).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import Any

log = logging.getLogger(__name__)

Frame = dict[str, Any]


class Subscription:
    def __init__(self, bus: InProcessBus, conversation_id: str, maxsize: int) -> None:
        self.bus = bus
        self.conversation_id = conversation_id
        self.queue: asyncio.Queue[Frame] = asyncio.Queue(maxsize)
        self.overflowed = False

    async def get(self) -> Frame:
        return await self.queue.get()

    def close(self) -> None:
        self.bus._unsubscribe(self)


class InProcessBus:
    def __init__(self, queue_size: int = 256) -> None:
        self.queue_size = queue_size
        self._subs: defaultdict[str, set[Subscription]] = defaultdict(set)

    def subscribe(self, conversation_id: str) -> Subscription:
        sub = Subscription(self, conversation_id, self.queue_size)
        self._subs[conversation_id].add(sub)
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.conversation_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.conversation_id]

    async def publish(self, conversation_id: str, frame: Frame) -> None:
        for sub in list(self._subs.get(conversation_id, ())):
            try:
                sub.queue.put_nowait(frame)
            except asyncio.QueueFull:
                sub.overflowed = True
                log.warning(
                    "bus queue full for conversation %s; subscriber must replay", conversation_id
                )
