"""The Rasa-compatible channels over a real server: the REST webhook and Socket.IO (Webchat)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import socketio
import uvicorn

from bot.types import Role
from channels import protocol
from channels.app import create_app
from channels.runtime import Runtime
from channels.service import utc_now
from channels.settings import Settings
from tests.channels.server import free_port, running_server

DELIVERY = "how long does delivery take?"
"""Answered with utter_delivery_times: every variant has buttons (examples/shop/bot.yml)."""


@pytest.fixture
def settings(tmp_path: Path, shop_home: Path) -> Settings:
    return Settings(
        home=shop_home,
        bot=Path("examples/shop"),
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'store.db'}",
        max_text_chars=500,
        max_frame_bytes=4096,
    )


@pytest.fixture
def server(settings: Settings, shop_bundle: Any) -> Iterator[str]:
    with running_server(settings, model=shop_bundle) as address:
        yield address


@dataclass
class Live:
    """A server in the test's own event loop, so that a test can reach its runtime."""

    address: str
    runtime: Runtime


@pytest.fixture
async def live(settings: Settings, shop_bundle: Any) -> AsyncIterator[Live]:
    port = free_port()
    app = create_app(settings, model=shop_bundle)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(60):
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.02)
    try:
        yield Live(f"127.0.0.1:{port}", app.state.runtime)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


# --- REST -------------------------------------------------------------------------------


async def post(address: str, body: object) -> httpx.Response:
    async with httpx.AsyncClient(timeout=60) as client:
        return await client.post(f"http://{address}/webhooks/rest/webhook", json=body)


async def test_rest_health_is_ok(server: str) -> None:
    """GET /webhooks/rest/ answers {"status": "ok"}, as Rasa does."""
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(f"http://{server}/webhooks/rest/")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_rest_answer_has_rasa_shape_and_buttons(server: str) -> None:
    """A message is answered with [{recipient_id, text, buttons: [{title, payload}]}]."""
    response = await post(server, {"sender": "rest-1", "message": DELIVERY})
    assert response.status_code == 200
    replies = response.json()
    assert isinstance(replies, list) and len(replies) >= 1
    first = replies[0]
    assert set(first) == {"recipient_id", "text", "buttons"}
    assert first["recipient_id"] == "rest-1"
    assert "working day" in first["text"]
    assert first["buttons"] and all(set(b) == {"title", "payload"} for b in first["buttons"])
    assert {"title": "Shipping costs", "payload": "How much is shipping?"} in first["buttons"]


async def test_rest_reply_without_buttons_has_no_buttons_key(server: str) -> None:
    """A bot message without buttons is just {recipient_id, text}."""
    replies = (await post(server, {"sender": "rest-2", "message": "thanks a lot!"})).json()
    assert replies and all(r["recipient_id"] == "rest-2" for r in replies)
    assert "buttons" not in replies[-1]


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"message": "hi"}, 422, "sender: Field required"),
        ({"sender": "x"}, 422, "message: Field required"),
        ({"sender": "", "message": "hi"}, 422, "sender: String should have at least 1"),
        ({"sender": "x", "message": "   "}, 422, "message: String should have at least 1"),
        ({"sender": 42, "message": "hi"}, 422, "sender: Input should be a valid string"),
        ({"sender": "x", "message": ["hi"]}, 422, "message: Input should be a valid string"),
        ({"sender": "x", "message": "hi", "metadata": 3}, 422, "metadata: Input should be"),
        (["sender", "message"], 422, "Input should be an object"),
        ({"sender": "x", "message": "a" * 501}, 422, "message: at most 500 characters, got 501"),
        ({"sender": "x" * 201, "message": "hi"}, 422, "sender: String should have at most 200"),
        ({"sender": "x", "message": "hi", "metadata": {"message_id": ""}}, 422, "message_id"),
    ],
)
async def test_rest_bad_bodies_are_refused_clearly(
    server: str, body: object, status: int, says: str
) -> None:
    """Missing, empty, mistyped or over-long fields get 422/400 saying what was wrong."""
    response = await post(server, body)
    assert response.status_code == status, response.text
    assert says in response.json()["detail"]


async def test_rest_body_that_is_not_json_is_refused(server: str) -> None:
    """A body that is not JSON gets a 422 with an example of what is expected."""
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(
            f"http://{server}/webhooks/rest/webhook",
            content=b"sender=x&message=hi",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
    assert response.status_code == 422
    assert '"sender"' in response.json()["detail"]


async def test_rest_oversized_body_is_refused(server: str) -> None:
    """A body larger than max_frame_bytes is refused with 413 before it is parsed."""
    response = await post(server, {"sender": "x", "message": "hi", "metadata": {"pad": "x" * 5000}})
    assert response.status_code == 413


async def test_rest_retry_with_message_id_is_answered_once(live: Live) -> None:
    """The same metadata.message_id twice is stored and answered once; the retry gets
    the same answer."""
    body = {"sender": "rest-3", "message": DELIVERY, "metadata": {"message_id": "m-1"}}
    first = (await post(live.address, body)).json()
    retry = await post(live.address, body)
    assert first and retry.status_code == 200 and retry.json() == first
    record = await live.runtime.store.conversation_for("rest", "rest-3", utc_now())
    events = await live.runtime.store.events_after(record.id, 0, 100)
    assert [e.text for e in events if e.role is Role.CUSTOMER] == [DELIVERY]
    assert len([e for e in events if e.role is Role.BOT]) == len(first)


async def test_rest_without_message_id_every_post_is_a_new_message(live: Live) -> None:
    """Rasa's REST channel has no message id: each post without one is answered."""
    body = {"sender": "rest-4", "message": "hello"}
    assert (await post(live.address, body)).json()
    assert (await post(live.address, body)).json()
    record = await live.runtime.store.conversation_for("rest", "rest-4", utc_now())
    events = await live.runtime.store.events_after(record.id, 0, 100)
    assert len([e for e in events if e.role is Role.CUSTOMER]) == 2


# --- Socket.IO ----------------------------------------------------------------------------


class Webchat:
    """A Socket.IO client speaking Rasa Webchat's events."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.confirms: asyncio.Queue[Any] = asyncio.Queue()
        self.uttered: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.errors: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.sio.on("session_confirm", self.confirms.put)
        self.sio.on("bot_uttered", self.uttered.put)
        self.sio.on("frontdesk_error", self.errors.put)
        self.gone = asyncio.Event()
        self.sio.on("disconnect", lambda *_reason: self.gone.set())

    async def connect(self, address: str, transports: list[str] | None = None) -> None:
        await self.sio.connect(
            f"http://{address}", socketio_path="socket.io", transports=transports or ["websocket"]
        )

    async def session(self, session_id: str | None = None) -> str:
        await self.sio.emit("session_request", {"session_id": session_id})
        async with asyncio.timeout(10):
            confirmed = await self.confirms.get()
        assert isinstance(confirmed, str)
        return confirmed

    async def say(self, text: str, session_id: str) -> dict[str, Any]:
        await self.sio.emit("user_uttered", {"message": text, "session_id": session_id})
        return await self.next()

    async def next(self, limit_s: float = 30) -> dict[str, Any]:
        async with asyncio.timeout(limit_s):
            return await self.uttered.get()

    async def quiet(self, seconds: float = 0.5) -> list[dict[str, Any]]:
        """Whatever else is uttered within ``seconds``."""
        await asyncio.sleep(seconds)
        extra = []
        while not self.uttered.empty():
            extra.append(self.uttered.get_nowait())
        return extra

    async def close(self) -> None:
        await self.sio.disconnect()


@contextlib.asynccontextmanager
async def webchat(address: str, transports: list[str] | None = None) -> AsyncIterator[Webchat]:
    client = Webchat()
    await client.connect(address, transports)
    try:
        yield client
    finally:
        await client.close()


async def test_socketio_health_is_ok(server: str) -> None:
    """GET /webhooks/socketio/ answers {"status": "ok"}, as Rasa does."""
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(f"http://{server}/webhooks/socketio/")
    assert response.json() == {"status": "ok"}


async def test_session_request_is_confirmed_with_a_new_or_the_given_id(server: str) -> None:
    """session_confirm carries a fresh session id, or the one the client asked for."""
    async with webchat(server, ["polling", "websocket"]) as chat:  # long-polling works too
        fresh = await chat.session()
        assert len(fresh) >= 16
        assert await chat.session("my-session-1") == "my-session-1"
        await chat.sio.emit("session_request")  # no payload at all, as old clients do
        async with asyncio.timeout(10):
            assert len(await chat.confirms.get()) >= 16


async def test_user_uttered_is_answered_with_bot_uttered_and_quick_replies(server: str) -> None:
    """A message is answered with bot_uttered {text, quick_replies} in Rasa's shape."""
    async with webchat(server) as chat:
        session = await chat.session()
        answer = await chat.say(DELIVERY, session)
        assert "working day" in answer["text"]
        assert answer["quick_replies"]
        assert {
            "content_type": "text",
            "title": "Shipping costs",
            "payload": "How much is shipping?",
        } in answer["quick_replies"]
        assert await chat.quiet() == []  # each message once, although bus and answer race


async def test_bot_uttered_without_buttons_is_just_text(server: str) -> None:
    """A bot message without buttons is emitted as {text}."""
    async with webchat(server) as chat:
        session = await chat.session()
        answer = await chat.say("thanks a lot!", session)
        assert set(answer) == {"text"} and answer["text"]


async def test_bad_user_uttered_gets_an_error_event_and_the_socket_keeps_working(
    server: str,
) -> None:
    """An empty, mistyped or over-long message gets frontdesk_error; the socket stays usable."""
    async with webchat(server) as chat:
        session = await chat.session()
        for bad in ({"session_id": session}, {"message": 3}, {"message": "a" * 501}, "hi"):
            await chat.sio.emit("user_uttered", bad)
            async with asyncio.timeout(10):
                error = await chat.errors.get()
            assert error["code"] == "bad_frame" and error["message"]
        await chat.sio.emit("session_request", {"session_id": 5})
        async with asyncio.timeout(10):
            assert "session_id" in (await chat.errors.get())["message"]
        assert (await chat.say("hello", session))["text"]


async def test_flooding_gets_an_error_and_a_disconnect(
    tmp_path: Path, shop_home: Path, shop_bundle: Any
) -> None:
    """More user_uttered than the rate limit allows: frontdesk_error, then disconnected."""
    settings = Settings(
        home=shop_home,
        bot=Path("examples/shop"),
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'store.db'}",
        rate_limit_messages=2,
        rate_limit_window_s=30,
    )
    with running_server(settings, model=shop_bundle) as address:
        async with webchat(address) as chat:
            session = await chat.session()
            for text in ("hello", "thanks", "bye"):
                await chat.sio.emit("user_uttered", {"message": text, "session_id": session})
            async with asyncio.timeout(30):
                error = await chat.errors.get()
                await chat.gone.wait()
            assert error["code"] == "flooding"


async def test_open_socketio_connections_are_counted(server: str) -> None:
    """/metrics counts open Socket.IO connections apart from the widget's websockets."""
    from tests.channels.test_operations import sample

    async def count() -> float:
        async with httpx.AsyncClient(timeout=10) as client:
            text = (await client.get(f"http://{server}/metrics")).text
        return sample(text, "frontdesk_socketio_connections")

    async with webchat(server) as one, webchat(server) as two:
        await one.session()
        await two.session()
        assert await count() == 2
    async with asyncio.timeout(10):
        while True:  # the server sees the disconnects a moment later
            if await count() == 0:
                break
            await asyncio.sleep(0.05)


async def test_a_message_larger_than_the_frame_limit_closes_the_connection(server: str) -> None:
    """A user_uttered over FRONTDESK_MAX_FRAME_BYTES (4096 here) is not read: the
    connection is closed; one just under the limit is refused by the text limit instead,
    and the socket stays."""
    async with webchat(server) as chat:
        session = await chat.session()
        await chat.sio.emit("user_uttered", {"message": "a" * 4000, "session_id": session})
        async with asyncio.timeout(10):
            assert (await chat.errors.get())["code"] == "bad_frame"  # 500 characters at most
        assert not chat.gone.is_set()
        await chat.sio.emit("user_uttered", {"message": "a" * 5000, "session_id": session})
        async with asyncio.timeout(10):
            await chat.gone.wait()
        assert chat.errors.empty()


async def test_reconnecting_with_the_session_id_continues_the_conversation(live: Live) -> None:
    """A new socket with the same session_id writes into the same conversation."""
    async with webchat(live.address) as chat:
        session = await chat.session()
        await chat.say("hello", session)
    async with webchat(live.address) as chat:
        assert await chat.session(session) == session
        await chat.say(DELIVERY, session)
    store = live.runtime.store
    record = await store.conversation_for("socketio", session, utc_now())
    events = await store.events_after(record.id, 0, 100)
    assert [e.text for e in events if e.role is Role.CUSTOMER] == ["hello", DELIVERY]
    assert record.channel == "socketio"


async def test_a_client_that_does_not_read_is_disconnected_not_buffered(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Socket.IO client that stops reading while its conversation goes on is disconnected
    once SEND_QUEUE packets wait for it (counted as refused, reason send_queue); the other
    socket of the session gets every message meanwhile."""
    import websockets

    from channels import socketio_channel

    monkeypatch.setattr(socketio_channel, "SEND_QUEUE", 8)
    url = f"ws://{live.address}/socket.io/?EIO=4&transport=websocket"
    # an engine.io client by hand, so that it can stop reading: after one buffered frame
    # the library stops taking data from the socket (max_queue), and TCP fills up
    slow = await websockets.connect(url, max_queue=1, max_size=None, compression=None)
    assert (await slow.recv()).startswith("0")  # engine.io open
    await slow.send("40")
    assert (await slow.recv()).startswith("40")  # socket.io connect
    await slow.send('42["session_request",{"session_id":"slow-session"}]')
    assert await slow.recv() == '42["session_confirm","slow-session"]'

    refused = live.runtime.metrics.refused.labels("send_queue")
    before = refused._value.get()
    try:
        async with webchat(live.address) as reader:
            await reader.session("slow-session")
            store = live.runtime.store
            record = await store.conversation_for("socketio", "slow-session", utc_now())
            text = "x" * 32_000  # 400 of these: far more than the socket buffers hold
            for seq in range(1, 401):
                frame = {"type": "message", "seq": seq, "role": "agent", "text": text}
                await live.runtime.bus.publish(record.id, frame)
                await asyncio.sleep(0.002)  # as an agent types, not one burst
            for _ in range(400):
                assert (await reader.next())["text"] == text
            assert refused._value.get() == before + 1
            assert live.runtime.metrics.socketio_connections._value.get() == 1  # the reader
    finally:
        await slow.close()  # reads again, so that the server's stuck writes can finish


async def test_agent_messages_and_other_tabs_reach_every_socket_of_the_session(
    live: Live,
) -> None:
    """Messages published on the bus (an agent, another tab's answers) reach the session's
    sockets once each; a socket of another session hears nothing."""
    async with (
        webchat(live.address) as tab1,
        webchat(live.address) as tab2,
        webchat(live.address) as stranger,
    ):
        session = await tab1.session("shared-session")
        await tab2.session(session)
        await stranger.session("other-session")
        answer = await tab1.say("hello", session)
        assert await tab2.next() == answer  # the other tab sees the answer too

        store, bus = live.runtime.store, live.runtime.bus
        record = await store.conversation_for("socketio", session, utc_now())
        agent = await store.append_event(
            record.id,
            kind="message",
            role=Role.AGENT,
            text="Hi, this is Anna from the team.",
            payload={},
            now=utc_now(),
        )
        await bus.publish(record.id, protocol.event_frame(agent))
        assert await tab1.next() == {"text": "Hi, this is Anna from the team."}
        assert await tab2.next() == {"text": "Hi, this is Anna from the team."}
        assert await tab1.quiet() == [] and await tab2.quiet(0) == []
        assert await stranger.quiet(0) == []


async def test_disconnect_cleans_up_bus_subscriptions(live: Live) -> None:
    """When the last socket of a session leaves, its bus subscription is closed."""
    async with webchat(live.address) as chat:
        session = await chat.session("cleanup-session")
        await chat.say("hello", session)
        record = await live.runtime.store.conversation_for("socketio", session, utc_now())
        assert live.runtime.bus._subs.get(record.id)
    for _ in range(500):  # the server sees the disconnect a moment later
        if not live.runtime.bus._subs.get(record.id):
            break
        await asyncio.sleep(0.02)
    else:
        pytest.fail("the session's bus subscription outlived its last socket")


@pytest.mark.parametrize("sender", ["a\x00b", "\ud800", ""])
async def test_rest_sender_that_is_not_an_id_gets_400(server: str, sender: str) -> None:
    """A sender with a NUL or a lone surrogate, or an empty one: 400, never a 5xx."""
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(
            f"http://{server}/webhooks/rest/webhook",
            content=json.dumps({"sender": sender, "message": "hi"}),
            headers={"content-type": "application/json"},
        )
    assert response.status_code in (400, 422)


async def test_one_socket_cannot_create_conversations_by_the_thousand(live: Live) -> None:
    """A socket asking for session after session is refused and disconnected after a few
    (Rasa Webchat asks for one, or again after a reset): no flood of conversations."""
    async with webchat(live.address) as chat:
        for n in range(6):
            await chat.sio.emit("session_request", {"session_id": f"flood-{n}"})
        async with asyncio.timeout(10):
            error = await chat.errors.get()
            await chat.gone.wait()
    assert error["code"] == "flooding"
    page = await live.runtime.store.conversations_page()
    assert sum(1 for r in page if r.channel == "socketio") <= 5
