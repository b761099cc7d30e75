"""The widget websocket ``/ws/chat`` (DESIGN §7; close codes in ``channels/errors.py``).

One reader (this coroutine) and one writer task per connection; everything outbound goes
through a bounded queue to the writer, which drops events the client already has (by seq).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from typing import Any

from fastapi import WebSocket, WebSocketDisconnect

from bot.types import ConversationStatus
from channels import logs, protocol
from channels.bus import Subscription
from channels.errors import BadFrame, ChannelError, CloseCode
from channels.limits import AddressLimits, client_address
from channels.runtime import Runtime

log = logging.getLogger(__name__)

SEND_QUEUE = 512
TYPING_EVERY_S = 1.0


class Connection:
    def __init__(self, ws: WebSocket, runtime: Runtime) -> None:
        self.ws = ws
        self.runtime = runtime
        self.settings = runtime.settings
        self.outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(SEND_QUEUE)
        self.sent = protocol.RecentSeqs()
        self.conversation_id: str | None = None
        self.subscription: Subscription | None = None
        self.arrivals: deque[float] = deque()
        self.frames: deque[float] = deque()
        """When each of the recent frames arrived (any kind): the frame rate limit."""
        self.tasks: list[asyncio.Task[None]] = []
        self.typed_at = float("-inf")

    async def serve(self) -> None:
        await self.ws.accept()
        self.tasks.append(asyncio.create_task(self._write()))
        self.runtime.metrics.connections.inc()
        try:
            await self._read()
        except WebSocketDisconnect:
            pass
        except Exception:
            log.exception("widget connection failed")
            with contextlib.suppress(Exception):
                await self.ws.close(int(CloseCode.SERVER_ERROR), "internal error")
        finally:
            self.runtime.metrics.connections.dec()
            if self.subscription is not None:
                self.subscription.close()
            for task in self.tasks:
                task.cancel()
            for task in self.tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _read(self) -> None:
        while True:
            if self.conversation_id is None:  # a connection must say hello in time
                try:
                    async with asyncio.timeout(self.settings.hello_timeout_s):
                        message = await self.ws.receive()
                except TimeoutError:
                    await self._close(CloseCode.SLOW_CLIENT, "no hello frame in time")
                    return
            else:
                message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            if self._too_many_frames():
                self.runtime.metrics.refused.labels("frame_rate").inc()
                await self._close(CloseCode.FLOODING, "too many frames; slow down")
                return
            raw = message.get("text")
            if raw is None:
                data = message.get("bytes") or b""
                raw = data.decode("utf-8", errors="replace")
            if len(raw.encode("utf-8")) > self.settings.max_frame_bytes:
                await self._close(
                    CloseCode.TOO_BIG, f"frame larger than {self.settings.max_frame_bytes} bytes"
                )
                return
            try:
                frame = protocol.parse_client_frame(raw, self.settings.max_text_chars)
                if isinstance(frame, protocol.Hello):
                    if not await self._hello(frame):
                        return
                elif isinstance(frame, protocol.TypingIn):
                    await self._typing()
                else:
                    if self._flooding():
                        await self._close(CloseCode.FLOODING, "too many messages; slow down")
                        return
                    if isinstance(frame, protocol.RateIn):
                        await self._rate(frame)
                    else:
                        await self._message(frame)
            except ChannelError as exc:
                if not await self._queue(protocol.error(exc.code, str(exc), exc.client_id)):
                    return

    async def _hello(self, hello: protocol.Hello) -> bool:
        if self.conversation_id is not None:
            raise BadFrame("hello: this connection already has a conversation")
        store = self.runtime.store
        if hello.conversation_id is None:
            record, token = await self.runtime.service.open("web")
        else:
            token = hello.token or ""
            found = await store.get_conversation(hello.conversation_id)
            if found is None or not await store.check_token(hello.conversation_id, token):
                await self._close(CloseCode.BAD_TOKEN, "unknown conversation or wrong token")
                return False
            record = found
        self.conversation_id = record.id
        logs.conversation_id.set(record.id)
        self.subscription = self.runtime.bus.subscribe(record.id)  # before the replay
        await self._put(
            protocol.welcome(record.id, token, record.last_seq, self.settings.max_text_chars)
        )
        # everything after last_seq, a page at a time (the writer drains while we read on);
        # a conversation opened just now has nothing to replay, so no store round trip
        after = hello.last_seq
        while hello.conversation_id is not None and (
            page := await store.events_after(record.id, after, self.settings.replay_limit)
        ):
            for event in page:
                await self._put(protocol.event_frame(event))
            after = page[-1].seq
        self.tasks.append(asyncio.create_task(self._forward(self.subscription)))
        return True

    async def _message(self, frame: protocol.MessageIn) -> None:
        if self.conversation_id is None:
            raise BadFrame("message: send a `hello` frame first")
        service = self.runtime.service
        event, created = await service.accept(self.conversation_id, frame.client_id, frame.text)
        self.sent.claim(event.seq)  # the ack stands for the message itself
        await self._queue(protocol.ack(frame.client_id, event.seq))
        if created:
            service.respond_later(event)
        else:  # a resend: answered now if a crash came between its first send and its answer
            service.catch_up_later(event)

    async def _rate(self, frame: protocol.RateIn) -> None:
        if self.conversation_id is None:
            raise BadFrame("rate: send a `hello` frame first")
        record = await self.runtime.store.get_conversation(self.conversation_id)
        if record is None or record.status is not ConversationStatus.CLOSED:
            raise BadFrame("rate: only a closed conversation can be rated")
        now = self.runtime.service.clock()
        await self.runtime.store.rate_conversation(self.conversation_id, frame.stars, now)
        await self._queue(protocol.rated(frame.stars))

    async def _typing(self) -> None:
        """Relay the customer's typing to the conversation's other subscribers (the agent's
        console), at most once per ``TYPING_EVERY_S``; not stored, not counted as flooding."""
        if self.conversation_id is None:
            raise BadFrame("typing: send a `hello` frame first")
        now = time.monotonic()
        if now - self.typed_at >= TYPING_EVERY_S:
            self.typed_at = now
            await self.runtime.bus.publish(self.conversation_id, protocol.typing("customer"))

    async def _forward(self, subscription: Subscription) -> None:
        while True:
            frame = await subscription.get()
            if frame["type"] == "typing" and frame.get("role") == "customer":
                continue  # the customer's own typing
            if subscription.overflowed or self.outbox.full():
                # the client reads slower than its conversation moves: close it; on reconnect
                # it replays what it missed from the store (nothing is lost)
                self.runtime.metrics.refused.labels("send_queue").inc()
                with contextlib.suppress(RuntimeError):
                    await self.ws.close(CloseCode.SLOW_CLIENT, "send queue full; reconnect")
                return
            self.outbox.put_nowait(frame)

    async def _put(self, frame: dict[str, Any]) -> None:
        """Queue a frame, waiting while the writer drains (a replay); a writer that is gone
        (the socket closed under it) ends the connection instead of a wait forever."""
        while True:
            if self.tasks[0].done():
                raise WebSocketDisconnect(1006)
            try:
                async with asyncio.timeout(1.0):
                    await self.outbox.put(frame)
                    return
            except TimeoutError:
                continue

    async def _queue(self, frame: dict[str, Any]) -> bool:
        """Queue a frame for the writer; a client whose queue is full does not read what
        it is sent: it is closed (4408) instead of holding its handler. -> still open."""
        try:
            self.outbox.put_nowait(frame)
        except asyncio.QueueFull:
            self.runtime.metrics.refused.labels("send_queue").inc()
            with contextlib.suppress(RuntimeError):
                await self.ws.close(CloseCode.SLOW_CLIENT, "send queue full; reconnect")
            return False
        return True

    async def _write(self) -> None:
        while True:
            frame = await self.outbox.get()
            if frame is None:
                return
            seq = frame.get("seq")
            event = frame["type"] in {"message", "status"}
            if event and isinstance(seq, int) and not self.sent.claim(seq):
                continue  # already delivered
            text = json.dumps(frame, ensure_ascii=False, separators=(",", ":"))
            try:
                await self.ws.send_text(text)
            except UnicodeEncodeError:
                # text that is not UTF-8 (a lone surrogate): sent escaped, never dropped
                await self.ws.send_text(json.dumps(frame, separators=(",", ":")))

    def _too_many_frames(self) -> bool:
        now = time.monotonic()
        window = self.settings.rate_limit_window_s
        while self.frames and now - self.frames[0] > window:
            self.frames.popleft()
        self.frames.append(now)
        return len(self.frames) > self.settings.rate_limit_frames

    def _flooding(self) -> bool:
        now = time.monotonic()
        window = self.settings.rate_limit_window_s
        while self.arrivals and now - self.arrivals[0] > window:
            self.arrivals.popleft()
        self.arrivals.append(now)
        return len(self.arrivals) > self.settings.rate_limit_messages

    async def _close(self, code: CloseCode, reason: str) -> None:
        # let the writer flush what is queued before closing
        await self.outbox.put(None)
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(self.tasks[0], 1.0)
        with contextlib.suppress(RuntimeError):
            await self.ws.close(code=int(code), reason=reason)


async def chat_socket(ws: WebSocket, runtime: Runtime, addresses: AddressLimits) -> None:
    if not await addresses.allow_connect(client_address(ws.scope)):
        runtime.metrics.refused.labels("connect_rate").inc()
        await ws.accept()
        await ws.close(CloseCode.TOO_MANY_CONNECTIONS, "too many new connections from your address")
        return
    await Connection(ws, runtime).serve()
