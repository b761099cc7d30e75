"""The agent websocket ``/ws/console``: the queue live, and the events of the conversation
the agent has open.

Server -> agent: ``hello {agent}``, ``queue {waiting, mine, now}`` whenever it changes, and
the watched conversation's frames (``message``, ``status``, ``typing``) with its
``conversation_id``; ``error {code, message}``. Agent -> server: ``watch {conversation_id,
last_seq?}`` (replays the events after ``last_seq``, then follows it live), ``unwatch``,
``typing {conversation_id}``. The queue is re-read from the store every
``FRONTDESK_CONSOLE_POLL_S`` and at once when a desk operation announces a change, so an
escalation made by any replica shows within that time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from fastapi import WebSocket, WebSocketDisconnect

from channels import protocol
from channels.bus import QUEUE_TOPIC, Subscription
from channels.console import wire
from channels.console.auth import COOKIE, AgentSession
from channels.console.errors import ConsoleCloseCode, ConsoleError
from channels.console.routes import Console, same_origin
from channels.protocol import SEQ_MAX
from channels.store import ID_MAX_CHARS, clean_id

log = logging.getLogger(__name__)

MAX_FRAME_CHARS = 4096


class ConsoleConnection:
    def __init__(self, ws: WebSocket, console: Console, session: AgentSession) -> None:
        self.ws = ws
        self.console = console
        self.session = session
        self.send_lock = asyncio.Lock()
        self.watched: tuple[str, Subscription, asyncio.Task[None]] | None = None

    async def serve(self) -> None:
        await self.send({"type": "hello", "agent": wire.agent(self.session.agent)})
        queue = asyncio.create_task(self._queue())
        try:
            await self._read()
        except WebSocketDisconnect:
            pass
        finally:
            queue.cancel()
            self._unwatch()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await queue

    async def send(self, frame: dict[str, Any]) -> None:
        async with self.send_lock:
            try:
                await self.ws.send_text(json.dumps(frame, ensure_ascii=False))
            except UnicodeEncodeError:  # not UTF-8 (a lone surrogate): sent escaped
                await self.ws.send_text(json.dumps(frame))

    async def _read(self) -> None:
        while True:
            raw = await self.ws.receive_text()
            try:
                frame = json.loads(raw) if len(raw) <= MAX_FRAME_CHARS else None
                if not isinstance(frame, dict):
                    raise ValueError("expected a JSON object")
                await self._handle(frame)
            except (ValueError, KeyError, TypeError, OverflowError, RecursionError) as exc:
                await self.send(protocol.error("bad_frame", _why(exc)))
            except ConsoleError as exc:
                await self.send(protocol.error(exc.code, str(exc)))

    async def _handle(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "watch":
            last_seq = frame.get("last_seq", 0)
            if type(last_seq) is not int or not 0 <= last_seq <= SEQ_MAX:
                raise ValueError(f"last_seq: expected a whole number from 0 to {SEQ_MAX}")
            await self._watch(_conversation_id(frame), last_seq)
        elif kind == "unwatch":
            self._unwatch()
        elif kind == "typing":
            await self.console.desk.typing(_conversation_id(frame), self.session.agent)
        else:
            raise ValueError(f"unknown frame type {kind!r}; expected watch, unwatch or typing")

    async def _watch(self, conversation_id: str, last_seq: int) -> None:
        self._unwatch()
        if await self.console.runtime.store.get_conversation(conversation_id) is None:
            raise ValueError(f"no conversation {conversation_id}")
        await self.console.desk.readable(conversation_id, self.session.agent)  # or Forbidden
        subscription = self.console.runtime.bus.subscribe(conversation_id)  # before the replay
        follower = _Follower(self, conversation_id, last_seq)
        await follower.replay()
        task = asyncio.create_task(follower.follow(subscription))
        self.watched = (conversation_id, subscription, task)

    def _unwatch(self) -> None:
        if self.watched is not None:
            _, subscription, task = self.watched
            subscription.close()
            task.cancel()
            self.watched = None

    async def _queue(self) -> None:
        try:
            await self._follow_queue()
        except Exception:
            log.exception("the console queue of agent %s failed", self.session.agent.id)
            with contextlib.suppress(RuntimeError):
                await self.ws.close(1011, "server error; reconnect")

    async def _follow_queue(self) -> None:
        desk = self.console.desk
        runtime = self.console.runtime
        changes = runtime.bus.subscribe(QUEUE_TOPIC)
        last: dict[str, Any] | None = None
        try:
            while True:
                now = runtime.service.clock()
                if await self.console.sessions.find(self.session.token, now) is None:
                    await self.ws.close(
                        int(ConsoleCloseCode.NOT_LOGGED_IN), "session ended; log in again"
                    )
                    return
                snapshot = {
                    "waiting": [wire.queue_entry(e) for e in await desk.queue()],
                    "mine": [wire.conversation(c) for c in await desk.mine(self.session.agent)],
                }
                if snapshot != last:
                    await self.send({"type": "queue", **snapshot, "now": wire.when(now)})
                    last = snapshot
                # a burst of changes costs a few re-reads; unchanged snapshots are not sent
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(runtime.settings.console_poll_s):
                        await changes.get()
        finally:
            changes.close()


class _Follower:
    """Sends one conversation's events to the agent, each once: replayed from the store,
    then live from the bus, and replayed again when the bus lost frames."""

    def __init__(self, connection: ConsoleConnection, conversation_id: str, seen: int) -> None:
        self.connection = connection
        self.conversation_id = conversation_id
        self.floor = seen
        """Every event up to this seq was sent (or was had by the agent before)."""
        self.sent: set[int] = set()

    async def replay(self) -> None:
        store = self.connection.console.runtime.store
        while page := await store.events_after(self.conversation_id, self.floor):
            for event in page:
                await self.send(protocol.event_frame(event))
            self.floor = max(self.floor, page[-1].seq)

    async def follow(self, subscription: Subscription) -> None:
        connection = self.connection
        while True:
            frame = await subscription.get()
            if subscription.overflowed:  # frames were dropped: the store has them
                subscription.overflowed = False
                await self.replay()
                continue
            await self.send(frame)
            if frame.get("type") == "status":  # taken by another agent: no longer readable
                try:
                    await connection.console.desk.readable(
                        self.conversation_id, connection.session.agent
                    )
                except ConsoleError as exc:
                    await connection.send(protocol.error(exc.code, str(exc)))
                    return

    async def send(self, frame: dict[str, Any]) -> None:
        seq = frame.get("seq")
        if isinstance(seq, int):
            if seq <= self.floor or seq in self.sent:
                return
            self.sent.add(seq)
            while self.floor + 1 in self.sent:
                self.floor += 1
                self.sent.discard(self.floor)
        await self.connection.send({**frame, "conversation_id": self.conversation_id})


def _conversation_id(frame: dict[str, Any]) -> str:
    value = frame.get("conversation_id")
    if not isinstance(value, str) or not 0 < len(value) <= ID_MAX_CHARS or not clean_id(value):
        raise ValueError("conversation_id: expected a conversation's id")
    return value


def _why(exc: Exception) -> str:
    """What was wrong with a frame, without echoing it."""
    if isinstance(exc, RecursionError):
        return "frame nested too deeply"
    if isinstance(exc, KeyError):
        return f"missing field {exc}"
    if isinstance(exc, OverflowError):
        return "a number out of range"
    return str(exc)


async def console_socket(ws: WebSocket, console: Console) -> None:
    await ws.accept()
    if not same_origin(ws.headers):
        await ws.close(int(ConsoleCloseCode.WRONG_ORIGIN), "open the console from this server")
        return
    now = console.runtime.service.clock()
    session = await console.sessions.find(ws.cookies.get(COOKIE), now)
    if session is None:
        await ws.close(int(ConsoleCloseCode.NOT_LOGGED_IN), "log in to the console first")
        return
    await ConsoleConnection(ws, console, session).serve()
