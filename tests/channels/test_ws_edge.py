"""The widget socket against hostile input: clear errors or the documented close codes,
never a silent socket or a handler that outlives its socket."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from channels.settings import Settings
from tests.channels.server import running_server
from tests.channels.test_operations import sample
from tests.channels.test_ws import ask, hello


@pytest.fixture
def settings(tmp_path: Path, shop_home: Path) -> Settings:
    return Settings(
        home=shop_home,
        bot=Path("examples/shop"),
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'store.db'}",
        rate_limit_frames=40,
        rate_limit_window_s=5,
        hello_timeout_s=1.0,
        recover_on_start=False,
    )


@pytest.fixture
def server(settings: Settings, shop_bundle: Any) -> Iterator[str]:
    with running_server(settings, model=shop_bundle) as address:
        yield address


async def test_a_lone_surrogate_gets_an_error_and_the_socket_keeps_working(server: str) -> None:
    """A frame with a lone surrogate is refused with an error frame: the client_id is
    echoed only where it is one the client can match (not the surrogate); the socket
    answers the next message."""
    ws, _ = await hello(server)
    await ws.send('{"type":"message","client_id":"\\ud800","text":"hello"}')
    error = json.loads(await ws.recv())
    assert error["type"] == "error" and error["code"] == "bad_frame"
    assert "client_id" not in error
    await ws.send('{"type":"message","client_id":"t1","text":"hi \\udc00 there"}')
    error = json.loads(await ws.recv())
    assert error["type"] == "error" and error["client_id"] == "t1"
    answer = await ask(ws, "t2", "how much is shipping?")
    assert answer[-1]["role"] == "bot"
    await ws.close()


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "hello", "last_seq": 2**63},
        {"type": "hello", "conversation_id": "a\x00b", "token": "x"},
        {"type": "hello", "token": "\ud800"},
    ],
)
async def test_a_bad_hello_gets_an_error_frame_not_a_dropped_socket(
    server: str, frame: dict[str, Any]
) -> None:
    async with websockets.connect(f"ws://{server}/ws/chat") as ws:
        await ws.send(json.dumps(frame))
        error = json.loads(await ws.recv())
        assert error["type"] == "error" and error["code"] == "bad_frame"
        await ws.send(json.dumps({"type": "hello"}))
        assert json.loads(await ws.recv())["type"] == "welcome"


async def test_a_socket_that_never_says_hello_is_closed_with_4408(server: str) -> None:
    async with websockets.connect(f"ws://{server}/ws/chat") as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            async with asyncio.timeout(10):
                await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4408


async def test_typing_and_invalid_frames_count_toward_the_frame_limit(server: str) -> None:
    """Frames of any kind past the limit close the socket with 4429."""
    ws, _ = await hello(server)
    with pytest.raises(websockets.ConnectionClosed) as closed:
        async with asyncio.timeout(10):
            for n in range(200):
                await ws.send(json.dumps({"type": "typing"} if n % 2 else {"type": "nonsense"}))
            while True:
                await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4429


async def test_a_client_that_floods_without_reading_leaves_no_handler(
    tmp_path: Path, shop_home: Path, shop_bundle: Any
) -> None:
    """Invalid frames sent without reading the errors, then a disconnect: the handler
    ends (the connection gauge goes back to 0)."""
    settings = Settings(
        home=shop_home,
        bot=Path("examples/shop"),
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'store.db'}",
        rate_limit_frames=100_000,
        recover_on_start=False,
    )
    with running_server(settings, model=shop_bundle) as address:
        for _ in range(3):
            ws = await websockets.connect(f"ws://{address}/ws/chat", max_queue=1)
            await ws.send(json.dumps({"type": "hello"}))
            for _ in range(3000):
                await ws.send("not json " * 20)
            await ws.close()
        async with httpx.AsyncClient(timeout=10) as http:
            async with asyncio.timeout(20):
                while True:
                    text = (await http.get(f"http://{address}/metrics")).text
                    if sample(text, "frontdesk_connections") == 0:
                        break
                    await asyncio.sleep(0.2)  # the server's own gauge
