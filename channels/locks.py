"""Per-conversation locks: a conversation's messages are answered one at a time (DESIGN §5).

:class:`InProcessLocks` (the default) is an :class:`asyncio.Lock` per conversation. Its
waiters are served first come, first served, and the service asks for the lock in the order
the messages were accepted, so one process answers them in order.

:class:`RedisLocks` serves several processes. Redis grants its lock to whoever polls first, so
the lock alone does not keep the order: seq 5 accepted by process A and seq 6 by process B may
reach the lock as 6, 5. The lock therefore carries a fence, the highest sequence number
answered under it (:attr:`Held.answered`), and the service answers, under the lock, every
customer message up to its own that is not answered yet, in seq order (see
``ConversationService.respond``). A lock expires ``ttl_s`` (6 s) after its holder stops
renewing it, so a crashed process blocks its conversations for at most that long, and the
crash recovery (``channels.recovery``) then answers what it left.
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
    """Redis locks (``SET NX PX`` with a token), renewed while held, with a fence key.

    Waiting costs Redis little, however many messages queue:

    - in one process, a conversation's waiters queue on a local lock first
      (:class:`InProcessLocks`), so only one of them contends in Redis;
    - that one tries ``SET NX`` when the holder's release is announced on the
      ``{prefix}released`` channel (one subscription per process), and every ``poll_s``
      in case an announcement was missed or the holder died;
    - the connections come from one pool of ``max_connections``: a command that finds
      them all busy waits for one (it never fails for it);
    - the holder renews its lock every ``ttl_s / 3`` (a heartbeat): a replica that dies
      releases its conversations within ``ttl_s``, a few seconds.
    """

    def __init__(
        self,
        url: str,
        *,
        ttl_s: float = 6.0,
        wait_s: float = 60.0,
        poll_s: float = 0.25,
        fence_ttl_s: int = 7 * 24 * 3600,
        prefix: str = PREFIX,
        max_connections: int = 50,
    ) -> None:
        from redis.asyncio import BlockingConnectionPool, Redis

        if wait_s <= ttl_s:
            raise ValueError(
                f"wait_s ({wait_s}) must exceed ttl_s ({ttl_s}): a waiter must outlast the "
                "lock of a crashed holder"
            )
        pool = BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=None, socket_connect_timeout=5.0
        )
        self.redis: Redis = Redis(connection_pool=pool)
        self.ttl_s = ttl_s
        self.wait_s = wait_s
        self.poll_s = poll_s
        self.fence_ttl_s = fence_ttl_s
        """How long the fence outlives the conversation's last answer; after that the
        service falls back to the store (bot replies' ``in_reply_to``)."""
        self.prefix = prefix
        self.released_channel = f"{prefix}released"
        self._local = InProcessLocks()
        self._wakeups: dict[str, asyncio.Event] = {}
        self._listener: asyncio.Task[None] | None = None

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
        async with self._local.hold(conversation_id):  # one contender per process
            lock = await self._acquire(conversation_id)
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
                    await self.redis.publish(self.released_channel, conversation_id)
                except Exception as exc:  # expired meanwhile, or Redis is gone: it expires
                    log.warning("releasing the lock of conversation %s: %s", conversation_id, exc)

    async def _acquire(self, conversation_id: str) -> Lock:
        """Take the conversation's Redis lock, trying again when a release is announced or
        every ``poll_s``; :class:`LockUnavailable` after ``wait_s``."""
        lock = self.lock(conversation_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_s
        wakeup = asyncio.Event()
        try:
            while not await lock.acquire(blocking=False):
                if loop.time() >= deadline:
                    raise LockUnavailable(
                        f"conversation {conversation_id} stayed locked for {self.wait_s:g}s; "
                        "another replica is stuck on it (the lock expires by itself)"
                    )
                self._wakeups[conversation_id] = wakeup
                self._listen()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(self.poll_s, deadline - loop.time())):
                        await wakeup.wait()
                wakeup.clear()
        finally:
            if self._wakeups.get(conversation_id) is wakeup:
                del self._wakeups[conversation_id]
        return lock

    def _listen(self) -> None:
        """Start the process's one subscription to release announcements (once)."""
        if self._listener is None or self._listener.done():
            self._listener = asyncio.create_task(self._released(), name="frontdesk-lock-wakeups")

    async def _released(self) -> None:
        while True:
            try:
                pubsub = self.redis.pubsub()
                await pubsub.subscribe(self.released_channel)
                try:
                    async for message in pubsub.listen():
                        if message.get("type") != "message":
                            continue
                        data = message.get("data")
                        name = data.decode() if isinstance(data, bytes) else str(data)
                        wakeup = self._wakeups.get(name)
                        if wakeup is not None:
                            wakeup.set()
                finally:
                    with contextlib.suppress(Exception):
                        await pubsub.aclose()  # type: ignore[no-untyped-call]
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis restarted: waiters poll meanwhile
                log.warning("lock release announcements lost (%s); subscribing again", exc)
                await asyncio.sleep(1.0)

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
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
        await self.redis.aclose()
        await self.redis.connection_pool.disconnect()
