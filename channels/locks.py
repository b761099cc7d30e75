"""Per-conversation locks: a conversation's messages are answered one at a time (DESIGN §5).

:class:`InProcessLocks` (the default) is an :class:`asyncio.Lock` per conversation. Its
waiters are served first come, first served, and the service asks for the lock in the order
the messages were accepted, so one process answers them in order.

:class:`RedisLocks` serves several processes. Redis grants its lock to whoever polls first, so
the lock alone does not keep the order: seq 5 accepted by process A and seq 6 by process B may
reach the lock as 6, 5. The lock therefore carries a fence, the highest sequence number
answered under it (:attr:`Held.answered`), and the service answers, under the lock, every
customer message up to its own that is not answered yet, in seq order (see
``ConversationService.respond``). A lock expires ``ttl_s`` after its holder stops renewing
it, so a crashed process blocks its conversations for at most that long.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Final, Protocol

from channels.errors import ChannelError

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.lock import Lock

log = logging.getLogger(__name__)

PREFIX: Final = "frontdesk:"


class LockUnavailable(ChannelError):
    """A conversation's lock could not be taken in time (another process holds it)."""

    code = "busy"


class Held:
    """A conversation's lock while it is held."""

    def __init__(self, in_order: bool, answered: int | None = None) -> None:
        self.in_order = in_order
        """True when messages reach this lock in the order they were accepted (one process):
        nothing earlier can still be waiting."""
        self.answered = answered
        """The highest sequence number answered under this lock, when known."""

    async def mark_answered(self, seq: int) -> None:
        """Record that everything up to ``seq`` is answered."""
        self.answered = max(seq, self.answered or 0)


class ConversationLocks(Protocol):
    def hold(self, conversation_id: str) -> contextlib.AbstractAsyncContextManager[Held]:
        """Wait for the conversation's lock and hold it for the ``async with`` block."""
        ...

    async def close(self) -> None: ...


class InProcessLocks:
    """One :class:`asyncio.Lock` per conversation with waiters, dropped when unused."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, conversation_id: str) -> AsyncIterator[Held]:
        # no await before the lock's own: callers queue in the order they called
        lock, users = self._locks.get(conversation_id, (asyncio.Lock(), 0))
        self._locks[conversation_id] = (lock, users + 1)
        try:
            async with lock:
                yield Held(in_order=True)
        finally:
            lock, users = self._locks[conversation_id]
            if users <= 1:
                del self._locks[conversation_id]
            else:
                self._locks[conversation_id] = (lock, users - 1)

    async def close(self) -> None:
        """Nothing to release."""


class _RedisHeld(Held):
    def __init__(self, redis: Redis, key: str, answered: int | None, ttl_s: int) -> None:
        super().__init__(in_order=False, answered=answered)
        self._redis = redis
        self._key = key
        self._ttl_s = ttl_s

    async def mark_answered(self, seq: int) -> None:
        if self.answered is not None and seq <= self.answered:
            return
        await super().mark_answered(seq)
        try:  # the holder alone writes it, so it only grows
            await self._redis.set(self._key, seq, ex=self._ttl_s)
        except Exception as exc:  # the replies' in_reply_to in the store still tell
            log.warning("could not record answered seq %d at %s: %s", seq, self._key, exc)


class RedisLocks:
    """Redis locks (``SET NX PX`` with a token), renewed while held, with a fence key."""

    def __init__(
        self,
        url: str,
        *,
        ttl_s: float = 30.0,
        wait_s: float = 60.0,
        poll_s: float = 0.02,
        fence_ttl_s: int = 7 * 24 * 3600,
        prefix: str = PREFIX,
    ) -> None:
        from redis.asyncio import Redis

        if wait_s <= ttl_s:
            raise ValueError(
                f"wait_s ({wait_s}) must exceed ttl_s ({ttl_s}): a waiter must outlast the "
                "lock of a crashed holder"
            )
        self.redis: Redis = Redis.from_url(url, socket_connect_timeout=5.0)
        self.ttl_s = ttl_s
        self.wait_s = wait_s
        self.poll_s = poll_s
        self.fence_ttl_s = fence_ttl_s
        """How long the fence outlives the conversation's last answer; after that the
        service falls back to the store (bot replies' ``in_reply_to``)."""
        self.prefix = prefix

    def lock(self, conversation_id: str) -> Lock:
        """The raw Redis lock of a conversation (tests, tools)."""
        return self.redis.lock(
            f"{self.prefix}lock:{conversation_id}",
            timeout=self.ttl_s,
            sleep=self.poll_s,
            blocking_timeout=self.wait_s,
            thread_local=False,  # asyncio tasks share the thread; each hold has its own Lock
        )

    @asynccontextmanager
    async def hold(self, conversation_id: str) -> AsyncIterator[Held]:
        lock = self.lock(conversation_id)
        if not await lock.acquire():
            raise LockUnavailable(
                f"conversation {conversation_id} stayed locked for {self.wait_s:g}s; "
                "another replica is stuck on it (the lock expires by itself)"
            )
        renewer = asyncio.create_task(self._renew(lock, conversation_id))
        try:
            key = f"{self.prefix}answered:{conversation_id}"
            raw = await self.redis.get(key)
            answered = int(raw) if raw is not None else None
            yield _RedisHeld(self.redis, key, answered, self.fence_ttl_s)
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            try:
                await lock.release()
            except Exception as exc:  # expired meanwhile, or Redis is gone: it expires
                log.warning("releasing the lock of conversation %s: %s", conversation_id, exc)

    async def _renew(self, lock: Lock, conversation_id: str) -> None:
        """Keep the lock while its holder works (a slow action, a long catch-up)."""
        while True:
            await asyncio.sleep(self.ttl_s / 3)
            try:
                await lock.reacquire()
            except Exception as exc:
                log.warning(
                    "could not renew the lock of conversation %s (%s); another replica may "
                    "answer it concurrently",
                    conversation_id,
                    exc,
                )

    async def close(self) -> None:
        await self.redis.aclose()
