"""The Socket.IO channel, compatible with the Rasa Webchat widget (DESIGN §7).

The events are those of Rasa's ``socketio`` channel with ``session_persistence: true``:

- client -> ``session_request {session_id?}``; server -> ``session_confirm`` with the session
  id as a plain string (a new one when the client sent none);
- client -> ``user_uttered {message, session_id}``; server -> one ``bot_uttered`` per bot
  message: ``{text}``, or ``{text, quick_replies: [{content_type: "text", title, payload}]}``
  when the message has buttons;
- server -> ``frontdesk_error {type, code, message}`` for a message it refused (Rasa has no
  such event; Rasa Webchat ignores it).

A session is a conversation on channel ``socketio`` whose customer id is the session id, so
reconnecting with the same session id continues the conversation. Every socket of a session
joins the session's room, and one bus subscription per room forwards what is said in the
conversation from elsewhere (an agent writing from the console, the answer to another tab)
as ``bot_uttered``. A message is emitted to a room once (by seq), whichever of the direct
answer and the bus gets there first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

import socketio
from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError

from channels import protocol
from channels.bridge import Inbound
from channels.bus import Frame, Subscription
from channels.errors import BadFrame, ChannelError, NotReady
from channels.rasa_rest import stored_buttons
from channels.runtime import Runtime
from channels.service import utc_now
from channels.settings import Settings
from channels.store import EXTERNAL_ID_MAX_CHARS

log = logging.getLogger(__name__)

router = APIRouter(prefix="/webhooks/socketio", tags=["rasa"])


@router.get("/")
async def health() -> dict[str, str]:
    """Rasa's channel health check."""
    return {"status": "ok"}


CHANNEL = "socketio"
SHUTDOWN_S = 5.0
SESSIONS_PER_SOCKET = 5
"""Sessions one socket may ask for: more is a script creating conversations."""
"""How long a stopping server waits for Socket.IO clients to take what is queued for them."""
SEND_QUEUE = 512
"""Packets a connection may have waiting to be written, as the widget websocket's send
queue: a client that reads slower than its conversation moves is disconnected (it may
reconnect with its session id) instead of being buffered without end."""
BOT_UTTERED = "bot_uttered"
ERROR_EVENT = "frontdesk_error"
SPOKEN_ROLES = frozenset({"bot", "agent"})
"""Roles whose messages reach the customer as ``bot_uttered``."""

M = TypeVar("M", bound=BaseModel)
SessionId = Annotated[str, StringConstraints(min_length=1, max_length=EXTERNAL_ID_MAX_CHARS)]


class SessionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    session_id: SessionId | None = None


class UserUttered(BaseModel):
    # Rasa Webchat also sends ``customData``: ignored.
    model_config = ConfigDict(extra="ignore", frozen=True)

    message: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
    session_id: SessionId | None = None


def bot_uttered(text: str | None, buttons: object) -> dict[str, Any]:
    """A bot or agent message as Rasa's socketio channel emits it."""
    message: dict[str, Any] = {"text": text or ""}
    quick_replies = [
        {"content_type": "text", "title": b.title, "payload": b.payload}
        for b in stored_buttons(buttons)
    ]
    if quick_replies:
        message["quick_replies"] = quick_replies
    return message


@dataclass
class _Socket:
    """One connected client."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    """Its events are handled one at a time, in the order they arrived."""
    session_id: str | None = None
    arrivals: deque[float] = field(default_factory=deque)
    sessions: set[str] = field(default_factory=set)
    """The session ids it asked for (at most :data:`SESSIONS_PER_SOCKET`)."""


@dataclass
class _Room:
    """The sockets of one session and the conversation they follow."""

    session_id: str
    members: set[str] = field(default_factory=set)
    conversation_id: str | None = None
    subscription: Subscription | None = None
    forwarder: asyncio.Task[None] | None = None
    last_seq: int = 0
    """The newest sequence number seen: a replay after a bus overflow starts there."""
    emitted: protocol.RecentSeqs = field(default_factory=protocol.RecentSeqs)
    closed: bool = False

    @property
    def name(self) -> str:
        # prefixed: a session id must never name another socket's own room (its sid)
        return f"session:{self.session_id}"

    def unfollow(self) -> None:
        if self.subscription is not None:
            self.subscription.close()
            self.subscription = None
        if self.forwarder is not None:
            self.forwarder.cancel()
            self.forwarder = None
        self.conversation_id = None


class SocketIOChannel:
    """A python-socketio server bound to a runtime by the app's lifespan."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # cors_allowed_origins=[]: no origin check, as Rasa does, so that the widget can be
        # embedded on the shop's own site. Sessions are not cookies: nothing to forge.
        self.sio = socketio.AsyncServer(
            async_mode="asgi",
            cors_allowed_origins=[],
            max_http_buffer_size=settings.max_frame_bytes,
        )
        self.runtime: Runtime | None = None
        self.sockets: dict[str, _Socket] = {}
        self.rooms: dict[str, _Room] = {}
        self.sio.on("connect", self._connect)
        self.sio.on("disconnect", self._disconnect)
        self.sio.on("session_request", self._guarded(self._session_request))
        self.sio.on("user_uttered", self._guarded(self._user_uttered))

    def asgi_app(self) -> socketio.ASGIApp:
        """The app to mount at ``/socket.io`` (routing is left to the mount)."""
        return socketio.ASGIApp(self.sio, socketio_path=None)

    def start(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def stop(self) -> None:
        """Stop forwarding and the server's background tasks (before the runtime stops)."""
        self.runtime = None
        for room in list(self.rooms.values()):
            self._close(room)
        try:  # engine.io waits for each socket's queue to drain: a stuck client never does
            async with asyncio.timeout(SHUTDOWN_S):
                await self.sio.shutdown()
        except TimeoutError:
            log.warning("socket.io: clients still unread after %s s; stopping anyway", SHUTDOWN_S)

    def _require_runtime(self) -> Runtime:
        if self.runtime is None:
            raise NotReady("the server is starting or stopping; reconnect in a moment")
        return self.runtime

    # --- events -----------------------------------------------------------------------

    async def _connect(self, sid: str, environ: object, auth: object = None) -> None:
        if self.runtime is None:
            raise socketio.exceptions.ConnectionRefusedError("server not ready")
        self.sockets[sid] = _Socket()
        self.runtime.metrics.socketio_connections.inc()

    async def _disconnect(self, sid: str, reason: object = None) -> None:
        socket = self.sockets.pop(sid, None)
        if socket is None:
            return
        if self.runtime is not None:
            self.runtime.metrics.socketio_connections.dec()
        if socket.session_id is not None:
            self._leave(sid, socket.session_id)

    def _guarded(
        self, handler: Callable[[str, _Socket, object], Awaitable[None]]
    ) -> Callable[..., Awaitable[None]]:
        """Run ``handler`` for one socket at a time; its errors go back to the client."""

        async def run(sid: str, data: object = None, *_extra: object) -> None:
            socket = self.sockets.get(sid)
            if socket is None:
                return
            async with socket.lock:
                if self.sockets.get(sid) is not socket:
                    return  # disconnected while waiting for the lock
                try:
                    await handler(sid, socket, data)
                except ChannelError as exc:
                    await self._error(sid, exc.code, str(exc))
                except Exception:
                    log.exception("socket.io event from %s failed", sid)
                    await self._error(sid, ChannelError.code, "internal error; try again")

        return run

    async def _session_request(self, sid: str, socket: _Socket, data: object) -> None:
        runtime = self._require_runtime()
        request = _parse(SessionRequest, data, '{"session_id": "..."} or {}')
        session_id = request.session_id or uuid.uuid4().hex
        socket.sessions.add(session_id)
        if self._flooding(socket) or len(socket.sessions) > SESSIONS_PER_SOCKET:
            # a socket is one customer's: a few sessions (a reload, a reset), not thousands
            runtime.metrics.refused.labels("socketio_sessions").inc()
            await self._error(sid, "flooding", "too many sessions on one socket; slow down")
            await self.sio.disconnect(sid)
            return
        room = await self._join(sid, socket, session_id)
        if request.session_id is not None and room.conversation_id is None:
            # a returning session: follow its conversation now, so that an agent's
            # messages arrive before the customer writes again
            record = await runtime.store.conversation_for(CHANNEL, session_id, utc_now())
            self._follow(room, record.id, record.last_seq)
        await self.sio.emit("session_confirm", session_id, to=sid)

    async def _user_uttered(self, sid: str, socket: _Socket, data: object) -> None:
        runtime = self._require_runtime()
        if self._flooding(socket):
            await self._error(sid, "flooding", "too many messages; slow down")
            await self.sio.disconnect(sid)
            return
        message = _parse(UserUttered, data, '{"message": "...", "session_id": "..."}')
        limit = self.settings.max_text_chars
        if len(message.message) > limit:
            raise BadFrame(f"message: at most {limit} characters, got {len(message.message)}")
        # Without session_request (Rasa without session persistence) the socket is the session.
        session_id = message.session_id or socket.session_id or sid
        room = await self._join(sid, socket, session_id)
        # Socket.IO does not redeliver, so every user_uttered is a new message.
        inbound = Inbound(CHANNEL, session_id, message.message, uuid.uuid4().hex)
        event, created = await runtime.bridge.receive(inbound)
        if not created:
            return
        self._follow(room, event.conversation_id, event.seq)
        for reply in await runtime.bridge.answer(event):
            await self._utter(room, reply.seq, reply.text, reply.payload.get("buttons"))

    # --- rooms ------------------------------------------------------------------------

    async def _join(self, sid: str, socket: _Socket, session_id: str) -> _Room:
        if socket.session_id is not None and socket.session_id != session_id:
            old = self.rooms.get(socket.session_id)
            if old is not None:
                await self.sio.leave_room(sid, old.name)
            self._leave(sid, socket.session_id)
        room = self.rooms.get(session_id)
        if room is None:
            room = self.rooms[session_id] = _Room(session_id)
        socket.session_id = session_id  # from here on, a disconnect leaves the room
        if sid not in room.members:
            room.members.add(sid)
            await self.sio.enter_room(sid, room.name)
        return room

    def _leave(self, sid: str, session_id: str) -> None:
        room = self.rooms.get(session_id)
        if room is None:
            return
        room.members.discard(sid)
        if not room.members:
            self._close(room)

    def _close(self, room: _Room) -> None:
        room.closed = True
        room.unfollow()
        if self.rooms.get(room.session_id) is room:
            del self.rooms[room.session_id]

    def _follow(self, room: _Room, conversation_id: str, seen_seq: int) -> None:
        """Forward the live messages of ``conversation_id`` after ``seen_seq`` to ``room``
        (a closed conversation is followed by a new one: switch to it)."""
        if room.closed or room.conversation_id == conversation_id:
            return
        runtime = self._require_runtime()
        room.unfollow()
        room.conversation_id = conversation_id
        room.last_seq = seen_seq
        room.emitted.clear()  # sequence numbers are per conversation
        room.subscription = runtime.bus.subscribe(conversation_id)
        room.forwarder = asyncio.create_task(self._forward(room, room.subscription))

    async def _forward(self, room: _Room, subscription: Subscription) -> None:
        try:
            while True:
                frames = [await subscription.get()]
                if subscription.overflowed:
                    frames = await self._replay(room, subscription)
                for frame in frames:
                    seq = frame.get("seq")
                    if not isinstance(seq, int):
                        continue  # typing: Rasa Webchat shows its own indicator
                    room.last_seq = max(room.last_seq, seq)
                    if frame.get("type") == "message" and frame.get("role") in SPOKEN_ROLES:
                        await self._utter(room, seq, frame.get("text"), frame.get("buttons"))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("forwarding conversation %s to socket.io failed", room.conversation_id)

    async def _replay(self, room: _Room, subscription: Subscription) -> list[Frame]:
        """The bus dropped frames for us: read what we missed from the store."""
        subscription.overflowed = False
        runtime = self._require_runtime()
        events = await runtime.store.events_after(
            subscription.conversation_id, room.last_seq, self.settings.replay_limit
        )
        return [protocol.event_frame(e) for e in events]

    async def _utter(self, room: _Room, seq: int, text: object, buttons: object) -> None:
        if room.emitted.claim(seq):
            await self._drop_slow_readers(room)
            message = bot_uttered(text if isinstance(text, str) else None, buttons)
            await self.sio.emit(BOT_UTTERED, message, room=room.name)

    async def _drop_slow_readers(self, room: _Room) -> None:
        """Disconnect the room's sockets with :data:`SEND_QUEUE` packets unwritten.

        python-socketio queues every packet without limit and offers no bound; its
        engine.io socket's queue is where they wait, so it is read here. The socket is
        closed without waiting for that queue to drain (it never would)."""
        for sid in list(room.members):
            eio_sid = self.sio.manager.eio_sid_from_sid(sid, "/")
            engine_socket = self.sio.eio.sockets.get(eio_sid) if eio_sid else None
            queue = getattr(engine_socket, "queue", None)
            if engine_socket is None or queue is None or queue.qsize() < SEND_QUEUE:
                continue
            log.warning("socket.io %s: %d packets unread, disconnected", sid, queue.qsize())
            if self.runtime is not None:
                self.runtime.metrics.refused.labels("send_queue").inc()
            await engine_socket.close(wait=False, abort=True)

    # --- helpers ----------------------------------------------------------------------

    def _flooding(self, socket: _Socket) -> bool:
        now = time.monotonic()
        window = self.settings.rate_limit_window_s
        while socket.arrivals and now - socket.arrivals[0] > window:
            socket.arrivals.popleft()
        socket.arrivals.append(now)
        return len(socket.arrivals) > self.settings.rate_limit_messages

    async def _error(self, sid: str, code: str, message: str) -> None:
        with contextlib.suppress(Exception):  # the socket may be gone already
            await self.sio.emit(ERROR_EVENT, protocol.error(code, message), to=sid)


def _parse(model: type[M], data: object, expected: str) -> M:
    try:
        return model.model_validate(data if data is not None else {})
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "payload"
        raise BadFrame(f"{where}: {err['msg']}; expected {expected}") from exc
