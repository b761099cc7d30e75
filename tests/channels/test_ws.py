"""The widget websocket over a real server and real sockets, with the trained demo bot."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from bot.types import ConversationStatus
from channels.service import utc_now
from channels.settings import Settings
from channels.store import Store
from tests.channels.server import running_server

Frame = dict[str, Any]
ORDERS = json.loads((Path(__file__).resolve().parents[2] / "examples/shop/orders.json").read_text())


@pytest.fixture
def settings(tmp_path: Path, shop_home: Path) -> Settings:
    return Settings(
        home=shop_home,
        bot=Path("examples/shop"),
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'store.db'}",
        rate_limit_messages=10,
        rate_limit_window_s=5,
        max_frame_bytes=4096,
    )


@pytest.fixture
def server(settings: Settings, shop_bundle: Any) -> Iterator[str]:
    with running_server(settings, model=shop_bundle) as address:
        yield address


async def hello(address: str, **fields: Any) -> tuple[ClientConnection, Frame]:
    ws = await websockets.connect(f"ws://{address}/ws/chat")
    await ws.send(json.dumps({"type": "hello", **fields}))
    welcome = json.loads(await ws.recv())
    return ws, welcome


async def until(ws: ClientConnection, done: Any, limit_s: float = 20) -> list[Frame]:
    """Frames received until ``done(frame)`` is true for one (included)."""
    frames: list[Frame] = []
    async with asyncio.timeout(limit_s):
        while True:
            frame = json.loads(await ws.recv())
            frames.append(frame)
            if done(frame):
                return frames


def bot_message(frame: Frame) -> bool:
    return frame["type"] == "message" and frame["role"] == "bot"


async def ask(ws: ClientConnection, client_id: str, text: str) -> list[Frame]:
    await ws.send(json.dumps({"type": "message", "client_id": client_id, "text": text}))
    return await until(ws, bot_message)


async def quiet(ws: ClientConnection, seconds: float = 0.5) -> list[Frame]:
    """Whatever else arrives within ``seconds``."""
    frames: list[Frame] = []
    try:
        async with asyncio.timeout(seconds):
            while True:
                frames.append(json.loads(await ws.recv()))
    except TimeoutError:
        return frames


async def test_order_status_comes_from_the_action(server: str) -> None:
    """'where is my order 1042?' is acked, then answered by the custom action from orders.json."""
    ws, welcome = await hello(server)
    assert welcome["type"] == "welcome" and welcome["seq"] == 0 and welcome["token"]
    frames = await ask(ws, "c1", "where is my order 1042?")
    assert frames[0] == {"type": "ack", "client_id": "c1", "seq": 1}
    answer = frames[-1]
    assert answer["seq"] > 1
    assert answer["in_reply_to"] == 1  # the ack's seq: which message this answers
    order = ORDERS["1042"]
    assert "1042" in answer["text"]
    assert order["status"] in answer["text"].lower() or order.get("tracking", "") in answer["text"]
    await ws.close()


async def test_asking_for_a_person_escalates(server: str) -> None:
    """'I want to talk to a person' gets a handoff message, then what happens next (the queue
    or when the team is back), and the status becomes waiting."""
    ws, _ = await hello(server)
    frames = await ask(ws, "c1", "I want to talk to a person")
    frames += await until(ws, lambda f: f["type"] == "status")
    status = frames[-1]
    assert status["status"] == "waiting" and status["reason"] == "requested"
    said = [f["text"] for f in frames if bot_message(f)]
    assert len(said) == 2, said
    assert "in the queue" in said[1] or "is back" in said[1]  # depends on the time of day
    # a person handles it now: the bot stays silent
    await ws.send(json.dumps({"type": "message", "client_id": "c2", "text": "hello?"}))
    later = await quiet(ws, 1.5)
    assert [f["type"] for f in later] == ["ack"]
    await ws.close()


async def test_reconnect_replays_exactly_the_missed_events(server: str) -> None:
    """A client reconnecting with its token and last_seq gets every missed event once, in order."""
    ws, welcome = await hello(server)
    cid, token = welcome["conversation_id"], welcome["token"]
    seen = await ask(ws, "a", "hi")
    last_seq = max(f["seq"] for f in seen if "seq" in f)
    # send two more messages and leave before reading the answers
    await ws.send(
        json.dumps({"type": "message", "client_id": "b", "text": "how long does delivery take?"})
    )
    await ws.send(
        json.dumps({"type": "message", "client_id": "c", "text": "I want to talk to a person"})
    )
    await ws.close()
    await asyncio.sleep(3)  # the server answers while the client is away

    ws2, welcome2 = await hello(server, conversation_id=cid, token=token, last_seq=last_seq)
    assert welcome2["conversation_id"] == cid
    replay = await quiet(ws2, 1.5)
    seqs = [f["seq"] for f in replay if "seq" in f]
    assert seqs == list(range(last_seq + 1, welcome2["seq"] + 1))  # no gaps, no duplicates
    kinds = [(f["type"], f.get("role")) for f in replay]
    assert kinds[0] == ("message", "customer") and replay[0]["client_id"] == "b"
    assert ("status", None) in kinds  # the escalation happened while away
    # a full replay from 0 matches: same events, nothing lost
    ws3, _ = await hello(server, conversation_id=cid, token=token, last_seq=0)
    everything = await quiet(ws3, 1.5)
    assert [f["seq"] for f in everything] == list(range(1, welcome2["seq"] + 1))
    await ws2.close()
    await ws3.close()


async def test_retried_message_is_not_stored_or_answered_twice(server: str) -> None:
    """Sending the same client_id again gets the original seq and no second answer."""
    ws, _ = await hello(server)
    first = await ask(ws, "same", "hi")
    await ws.send(json.dumps({"type": "message", "client_id": "same", "text": "hi"}))
    again = await quiet(ws, 1.5)
    assert again == [{"type": "ack", "client_id": "same", "seq": first[0]["seq"]}]
    await ws.close()


async def test_a_closed_conversation_refuses_messages_and_stores_none(
    server: str, settings: Settings
) -> None:
    """After an agent closes it, a customer message gets `conversation_closed` (with what
    to do), nothing is stored or answered, and the socket stays usable."""
    ws, welcome = await hello(server)
    await ask(ws, "c1", "hi")
    store = await Store.open(settings.database_url)
    try:
        closed = await store.set_status(
            welcome["conversation_id"], ConversationStatus.CLOSED, reason=None, now=utc_now()
        )
        # (written behind the server's back: no status frame; the store alone refuses)
        await ws.send(json.dumps({"type": "message", "client_id": "c2", "text": "still there?"}))
        (refused,) = await until(ws, lambda f: f["type"] == "error")
        assert refused["code"] == "conversation_closed" and "hello" in refused["message"]
        assert await quiet(ws, 1.0) == []
        record = await store.get_conversation(welcome["conversation_id"])
        assert record is not None and record.last_seq == closed.seq
        await ws.send(json.dumps({"type": "rate", "stars": 5}))  # the socket still works
        async with asyncio.timeout(10):
            while True:  # the server writes it in another thread: poll the store
                if await store.rating_of(welcome["conversation_id"]) == 5:
                    break
                await asyncio.sleep(0.05)
    finally:
        await store.close()
    await ws.close()


@pytest.mark.parametrize(
    ("raw", "refused_id"),
    [
        ("not json", None),
        ('{"type": "dance"}', None),
        ('{"type": "message", "text": "no id"}', None),
        ('{"type": "message", "client_id": "x", "text": "   "}', "x"),
        ('{"type": "message", "client_id": "long", "text": "' + "a" * 2001 + '"}', "long"),
        ('{"type": "message", "client_id": "y", "text": "hi", "extra": 1}', "y"),
        ('{"type": "message", "client_id": "' + "z" * 65 + '", "text": "hi"}', None),
        ("[1, 2]", None),
        ("[" * 1500 + "]" * 1500, None),  # deeper than Python's JSON parser goes
    ],
)
async def test_malformed_frames_get_an_error_and_the_socket_keeps_working(
    server: str, raw: str, refused_id: str | None
) -> None:
    """A bad frame gets an `error` frame; the same connection and others keep working. A
    refused `message` is named by its `client_id`, so that a client stops resending it."""
    ws, _ = await hello(server)
    other, _ = await hello(server)
    await ws.send(raw)
    error = json.loads(await ws.recv())
    assert error["type"] == "error" and error["code"] == "bad_frame" and error["message"]
    assert error.get("client_id") == refused_id
    assert bot_message((await ask(ws, "ok", "hi"))[-1])
    assert bot_message((await ask(other, "ok", "hi"))[-1])
    await ws.close()
    await other.close()


async def test_message_before_hello_is_refused(server: str) -> None:
    """A message before hello gets an error that says to send hello first."""
    async with websockets.connect(f"ws://{server}/ws/chat") as ws:
        await ws.send(json.dumps({"type": "message", "client_id": "x", "text": "hi"}))
        error = json.loads(await ws.recv())
        assert error["code"] == "bad_frame" and "hello" in error["message"]
        assert "client_id" not in error  # not refused for good: it may come after hello


async def test_welcome_tells_the_text_limit_and_a_longer_message_is_refused_by_id(
    server: str, settings: Settings
) -> None:
    """`welcome` carries the server's `max_text_chars`; a longer message is refused with
    its `client_id` and nothing is stored; the next message is answered as usual."""
    ws, welcome = await hello(server)
    assert welcome["max_text_chars"] == settings.max_text_chars == 2000
    text = "x" * (settings.max_text_chars + 1)
    await ws.send(json.dumps({"type": "message", "client_id": "too-long", "text": text}))
    error = json.loads(await ws.recv())
    assert error["client_id"] == "too-long" and "at most 2000 characters" in error["message"]
    frames = await ask(ws, "fine", "hi")
    assert [f["client_id"] for f in frames if f["type"] == "ack"] == ["fine"]
    await ws.close()
    again, _ = await hello(
        server, conversation_id=welcome["conversation_id"], token=welcome["token"], last_seq=0
    )
    replayed = [f for f in await quiet(again) if f["type"] == "message"]
    assert [f.get("client_id") for f in replayed if f["role"] == "customer"] == ["fine"]
    await again.close()


async def test_wrong_token_closes_with_4401(server: str) -> None:
    """Another conversation's id with a wrong token is refused with close code 4401."""
    ws, welcome = await hello(server)
    await ws.close()
    intruder = await websockets.connect(f"ws://{server}/ws/chat")
    await intruder.send(
        json.dumps(
            {
                "type": "hello",
                "conversation_id": welcome["conversation_id"],
                "token": "guess",
                "last_seq": 0,
            }
        )
    )
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await intruder.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


async def test_oversized_frame_closes_with_1009(server: str) -> None:
    """A frame over the size limit closes the socket with 1009; the server keeps serving."""
    ws, _ = await hello(server)
    await ws.send(json.dumps({"type": "message", "client_id": "big", "text": "x" * 10_000}))
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    again, welcome = await hello(server)
    assert welcome["type"] == "welcome"
    await again.close()


async def test_flooding_closes_with_4429(server: str) -> None:
    """More messages than the rate limit allows close the socket with 4429."""
    ws, _ = await hello(server)
    with pytest.raises(websockets.ConnectionClosed) as closed:
        for i in range(30):
            await ws.send(json.dumps({"type": "message", "client_id": f"f{i}", "text": "hi"}))
        while True:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4429


class BrokenModel:
    """A model whose inference always fails (a corrupt bundle, out of memory, ...)."""

    version = "broken"

    def analyze(self, texts: list[str], contexts: list[str] | None = None, k: int = 5) -> list[Any]:
        raise RuntimeError("inference exploded")


async def test_inference_failure_still_answers(tmp_path: Path, shop_home: Path) -> None:
    """If answering fails, the customer gets an apology with a person button, not silence."""
    settings = Settings(
        home=shop_home,
        bot=Path("examples/shop"),
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'store.db'}",
    )
    with running_server(settings, model=BrokenModel()) as address:
        ws, _ = await hello(address)
        answer = (await ask(ws, "x", "hello"))[-1]
        await ws.close()
    assert "something went wrong on our side" in answer["text"]
    assert answer["buttons"][0]["title"] == "Talk to a person"


async def test_replay_pages_through_more_events_than_one_page(
    settings: Settings, shop_bundle: Any
) -> None:
    """A long conversation replays in full, in order, even past the store's page size."""
    small_pages = settings.model_copy(update={"replay_limit": 2})
    with running_server(small_pages, model=shop_bundle) as address:
        ws, welcome = await hello(address)
        for n, text in enumerate(["hello", "how long does delivery take?", "thanks"]):
            await ask(ws, f"p{n}", text)
        await quiet(ws)
        await ws.close()
        again, welcome2 = await hello(
            address, conversation_id=welcome["conversation_id"], token=welcome["token"], last_seq=0
        )
        replayed = [f for f in await quiet(again, 2.0) if "seq" in f]
        await again.close()
    seqs = [f["seq"] for f in replayed]
    assert seqs == list(range(1, welcome2["seq"] + 1))
    assert len(seqs) >= 6


def test_a_connection_remembers_a_bounded_window_of_delivered_seqs() -> None:
    """Each event is delivered once per connection, and what a connection remembers for that
    stays at the newest SEEN_WINDOW sequence numbers however long the conversation runs."""
    from channels.protocol import SEEN_WINDOW, RecentSeqs

    seen = RecentSeqs()
    assert seen.claim(1) and not seen.claim(1)
    for seq in range(2, 5 * SEEN_WINDOW):
        assert seen.claim(seq)
        assert not seen.claim(seq)  # the live copy after the replayed one
    assert len(seen) == SEEN_WINDOW
    assert not seen.claim(5 * SEEN_WINDOW - 1)  # the newest are still known
    seen.clear()
    assert seen.claim(5 * SEEN_WINDOW - 1)
