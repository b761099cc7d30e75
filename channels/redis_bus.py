"""The Redis bus: the in-process bus's interface, carried between server processes by Redis
pub/sub (DESIGN §5), for N replicas behind one load balancer.

Each process holds ONE subscriber connection, pattern-subscribed to every topic
(``frontdesk:conv:*``), and fans frames out to its local subscribers; ten thousand widget
connections are ten thousand local queues, not ten thousand Redis connections. A pattern
(rather than one ``SUBSCRIBE`` per conversation) makes :meth:`RedisBus.subscribe` take effect
at once, as the in-process one does: the widget subscribes and then replays the store, and no
frame published between the two may be lost. The price is that every process reads every
conversation's frames; it drops those without a local subscriber before decoding them.

A frame published here is delivered to this process's subscribers directly (so one process
behaves as with the in-process bus, Redis or not) and to the others through Redis, wrapped
as ``{"o": origin, "f": frame}`` so that this process skips its own echo.

The bus only pushes. When the subscriber connection drops, the bus reconnects with
exponential backoff and, once back, flags every local subscription ``overflowed`` (frames
published meanwhile are gone) and wakes it, so that its consumer replays from the store.
A publish that fails (Redis down) is logged and dropped for the same reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import uuid
from typing import TYPE_CHECKING, Any, Final

from channels import protocol
from channels.bus import Fanout, Frame, Subscription
from channels.errors import NotReady

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger(__name__)

PREFIX: Final = "frontdesk:conv:"
"""Channel of a topic: ``PREFIX + conversation_id``."""
HEALTH_CHECK_S: Final = 10


class RedisBus:
    """Redis pub/sub with local fan-out; build it with :meth:`connect`."""

    def __init__(
        self,
        url: str,
        queue_size: int = 256,
        *,
        prefix: str = PREFIX,
        publish_timeout_s: float = 1.0,
        backoff_s: float = 0.1,
        max_backoff_s: float = 5.0,
    ) -> None:
        from redis.asyncio import Redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self.url = url
        self.prefix = prefix
        self.publish_timeout_s = publish_timeout_s
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._fanout = Fanout(queue_size)
        self._origin = uuid.uuid4().hex
        self._publisher: Redis = Redis.from_url(
            url, socket_connect_timeout=publish_timeout_s, socket_timeout=publish_timeout_s
        )
        # No silent retries on the subscriber: a dropped connection must reach _listen,
        # which knows that frames were lost meanwhile.
        self.client_name = f"frontdesk-bus-{self._origin[:12]}"
        """The subscriber connection's name in Redis's ``CLIENT LIST``."""
        self._subscriber: Redis = Redis.from_url(
            url,
            client_name=self.client_name,
            retry=Retry(NoBackoff(), 0),
            socket_connect_timeout=5.0,
            socket_keepalive=True,
            health_check_interval=HEALTH_CHECK_S,  # a PING now and then finds a dead link
        )
        self._listener: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self.reconnects = 0
        """How often the subscriber connection was re-established after a loss."""

    @classmethod
    async def connect(cls, url: str, *, ready_timeout_s: float = 10.0, **kwargs: Any) -> RedisBus:
        """A started bus whose subscription is live; :class:`NotReady` when Redis does not
        answer within ``ready_timeout_s``."""
        bus = cls(url, **kwargs)
        bus.start()
        try:
            await bus.wait_connected(ready_timeout_s)
        except TimeoutError:
            await bus.close()
            raise NotReady(
                f"Redis at {_safe(url)} did not answer within {ready_timeout_s:g}s; start it "
                "or unset FRONTDESK_REDIS_URL to run a single process without it"
            ) from None
        return bus

    def start(self) -> None:
        if self._listener is None:
            self._listener = asyncio.create_task(self._listen(), name="redis-bus")

    async def wait_connected(self, timeout_s: float) -> None:
        async with asyncio.timeout(timeout_s):
            await self._connected.wait()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def subscribe(self, conversation_id: str) -> Subscription:
        return self._fanout.subscribe(conversation_id)

    async def publish(self, conversation_id: str, frame: Frame) -> None:
        self._fanout.deliver(conversation_id, frame)
        data = json.dumps({"o": self._origin, "f": frame}, separators=(",", ":"), default=str)
        try:
            async with asyncio.timeout(self.publish_timeout_s):
                await self._publisher.publish(self.prefix + conversation_id, data)
        except Exception as exc:  # the bus only pushes: other processes replay from the store
            log.warning(
                "redis bus: could not publish to %s (%s: %s); other processes' subscribers "
                "will catch up from the store",
                conversation_id,
                type(exc).__name__,
                exc,
            )

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        await self._publisher.aclose()
        await self._subscriber.aclose()

    async def _listen(self) -> None:
        delay = self.backoff_s
        lost = False
        while True:
            pubsub = self._subscriber.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.psubscribe(self.prefix + "*")
                if lost:
                    self.reconnects += 1
                    log.warning("redis bus: reconnected; local subscribers replay from the store")
                    self._fanout.lost(protocol.typing())
                    lost = False
                self._connected.set()
                delay = self.backoff_s
                while True:
                    # a timeout, not a blocking read: the health check runs between reads
                    message = await pubsub.get_message(timeout=HEALTH_CHECK_S / 2)
                    if message is not None:
                        self._on_message(message)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # connection refused, reset, timed out...
                self._connected.clear()
                lost = True
                wait = delay * random.uniform(0.5, 1.0)  # jitter: replicas do not stampede
                log.warning(
                    "redis bus: subscriber connection to %s lost (%s: %s); reconnecting in %.1fs",
                    _safe(self.url),
                    type(exc).__name__,
                    exc,
                    wait,
                )
                await asyncio.sleep(wait)
                delay = min(delay * 2, self.max_backoff_s)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]  # untyped upstream

    def _on_message(self, message: dict[str, Any]) -> None:
        if message.get("type") != "pmessage":
            return
        channel = message["channel"]
        if isinstance(channel, bytes):
            channel = channel.decode("utf-8", errors="replace")
        conversation_id = str(channel)[len(self.prefix) :]
        if not self._fanout.has(conversation_id):
            return  # nobody here follows it: skip before decoding
        try:
            envelope = json.loads(message["data"])
            origin, frame = envelope["o"], envelope["f"]
        except (ValueError, TypeError, KeyError):
            log.warning("redis bus: dropped a malformed frame on %s", channel)
            return
        if origin != self._origin and isinstance(frame, dict):
            self._fanout.deliver(conversation_id, frame)


def _safe(url: str) -> str:
    """``url`` without its password, for log lines and error messages."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "<unparseable redis url>"
    host = parts.hostname or parts.path or "?"
    return f"{host}:{port}" if port else host
