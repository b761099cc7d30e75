"""Operations and limits: metrics, JSON logs, OpenAPI, body size, per-address rates, slow
clients."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import websockets
from pydantic import ValidationError

from channels import logs
from channels.bus import InProcessBus
from channels.errors import CloseCode
from channels.metrics import Metrics
from channels.settings import Settings
from channels.ws import SEND_QUEUE, Connection
from tests.channels.server import running_server
from tests.channels.test_ws import ask, hello


@pytest.fixture
def settings(tmp_path: Path, shop_home: Path) -> Settings:
    return Settings(
        home=shop_home,
        bot=Path("examples/shop"),
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'store.db'}",
        max_body_bytes=2048,
        ip_request_rate="5/minute",
        ip_connect_rate="3/minute",
    )


@pytest.fixture
def server(settings: Settings, shop_bundle: Any) -> Iterator[str]:
    with running_server(settings, model=shop_bundle) as address:
        yield address


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


def sample(text: str, name: str, labels: str = "") -> float:
    """One sample's value from a Prometheus text exposition."""
    for line in text.splitlines():
        if line.startswith(f"{name}{labels} ") or (not labels and line.startswith(f"{name} ")):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name}{labels} not in the exposition")


async def test_metrics_count_messages_latency_batches_and_connections(
    server: str, client: httpx.AsyncClient, shop_bundle: Any
) -> None:
    ws, _ = await hello(server)
    await ask(ws, "m1", "how long does delivery take?")
    await ask(ws, "m2", "can I return a jacket?")
    text = (await client.get(f"http://{server}/metrics")).text
    assert sample(text, "frontdesk_messages_total", '{direction="in"}') == 2
    assert sample(text, "frontdesk_messages_total", '{direction="out"}') >= 2
    assert sample(text, "frontdesk_reply_seconds_count") == 2
    # every answer is counted under the model version that chose it
    version = shop_bundle.version
    answers = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith('frontdesk_answers_total{decision="') and f'model="{version}"' in line
    ]
    assert sum(answers) >= 2
    assert sample(text, "frontdesk_batch_size_count") >= 2
    assert sample(text, "frontdesk_connections") == 1
    await ws.close()
    async with asyncio.timeout(10):
        while True:  # the server closes its side in another thread
            text = (await client.get(f"http://{server}/metrics")).text
            if sample(text, "frontdesk_connections") == 0:
                break
            await asyncio.sleep(0.05)


async def test_openapi_lists_the_http_channels(server: str, client: httpx.AsyncClient) -> None:
    spec = (await client.get(f"http://{server}/openapi.json")).json()
    assert {"/healthz", "/readyz", "/webhooks/rest/webhook"} <= set(spec["paths"])
    assert (await client.get(f"http://{server}/docs")).status_code == 200
    ready = (await client.get(f"http://{server}/readyz")).json()
    assert ready["store"] is True and ready["model"]


async def test_readyz_is_503_while_the_store_is_unreachable(
    tmp_path: Path, shop_home: Path, shop_bundle: Any, client: httpx.AsyncClient
) -> None:
    """A load balancer takes a replica out while its database refuses connections and puts it
    back once the database is there again; the server itself stays up and says which part
    is missing."""
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url
    from sqlalchemy.ext.asyncio import create_async_engine

    from tests.conftest import POSTGRES, private_postgres

    async with private_postgres() as url:
        name = make_url(url).database
        admin = create_async_engine(POSTGRES, isolation_level="AUTOCOMMIT")

        async def allow(yes: bool) -> None:
            async with admin.connect() as conn:
                await conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {yes}'))
                if not yes:  # and drop the server's open connections
                    await conn.execute(
                        sa.text(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            f"WHERE datname = '{name}'"
                        )
                    )

        settings = Settings(home=shop_home, bot=Path("examples/shop"), database_url=url)
        try:
            with running_server(settings, model=shop_bundle) as server:
                ready = await client.get(f"http://{server}/readyz")
                assert ready.status_code == 200 and ready.json()["store"] is True
                await allow(False)
                down = await client.get(f"http://{server}/readyz")
                assert down.status_code == 503
                assert down.json() == {"model": ready.json()["model"], "store": False}
                assert (await client.get(f"http://{server}/healthz")).status_code == 200
                await allow(True)
                again = await client.get(f"http://{server}/readyz")
                assert again.status_code == 200 and again.json()["store"] is True
        finally:
            await admin.dispose()


async def test_large_bodies_are_refused_declared_or_streamed(
    server: str, client: httpx.AsyncClient
) -> None:
    url = f"http://{server}/webhooks/rest/webhook"
    big = json.dumps({"sender": "s", "message": "x" * 4000})
    declared = await client.post(url, content=big, headers={"content-type": "application/json"})
    assert declared.status_code == 413
    assert "larger than 2048 bytes" in declared.json()["detail"]

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: chunked upload
        for start in range(0, len(big), 500):
            yield big[start : start + 500].encode()

    streamed = await client.post(url, content=chunks())
    assert streamed.status_code == 413


async def test_anonymous_http_is_rate_limited_per_address(
    server: str, client: httpx.AsyncClient
) -> None:
    url = f"http://{server}/webhooks/rest/webhook"
    codes = [
        (await client.post(url, json={"sender": "r", "message": "hello"})).status_code
        for _ in range(6)
    ]
    assert codes[:5] == [200] * 5
    assert codes[5] == 429
    refused = await client.post(url, json={"sender": "r", "message": "hello"})
    assert refused.headers["retry-after"] == "60"
    assert (await client.get(f"http://{server}/healthz")).status_code == 200  # not limited
    text = (await client.get(f"http://{server}/metrics")).text
    assert sample(text, "frontdesk_refused_total", '{reason="http_rate"}') == 2


async def test_new_connections_are_rate_limited_per_address(server: str) -> None:
    opened = [await websockets.connect(f"ws://{server}/ws/chat") for _ in range(3)]
    extra = await websockets.connect(f"ws://{server}/ws/chat")
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await asyncio.wait_for(extra.recv(), 10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == CloseCode.TOO_MANY_CONNECTIONS
    for ws in opened:
        await ws.close()


@pytest.mark.parametrize(
    "store_and_bus",
    [
        {},
        {"redis_url": "redis://127.0.0.1:6379/0"},  # SQLite: one process's file
        {"database_url": "postgresql+asyncpg://x@db/frontdesk"},  # no bus
    ],
)
def test_several_workers_need_postgres_and_redis(store_and_bus: dict[str, str]) -> None:
    """Worker processes share conversations and live events only through PostgreSQL and
    Redis: without them, settings with workers > 1 are refused, saying what to set."""
    with pytest.raises(ValidationError, match=r"workers=2 needs PostgreSQL .* and Redis"):
        Settings(workers=2, **store_and_bus)  # type: ignore[arg-type]
    shared = {"database_url": "postgresql+asyncpg://x@db/f", "redis_url": "redis://r:6379/0"}
    assert Settings(workers=2, **shared).workers == 2  # type: ignore[arg-type]


def test_rates_are_checked_when_settings_are_built() -> None:
    with pytest.raises(ValidationError, match="not a rate: 'lots'"):
        Settings(ip_connect_rate="lots")


class StuckSocket:
    """A websocket whose client never reads: sends block forever."""

    def __init__(self) -> None:
        self.closed: tuple[int, str] | None = None

    async def send_json(self, frame: dict[str, Any]) -> None:
        await asyncio.Event().wait()

    async def close(self, code: int, reason: str = "") -> None:
        self.closed = (code, reason)


async def test_a_client_that_does_not_read_is_closed_not_buffered_forever() -> None:
    metrics = Metrics()
    runtime = SimpleNamespace(settings=Settings(), metrics=metrics)
    ws = StuckSocket()
    connection = Connection(ws, runtime)  # type: ignore[arg-type]
    bus = InProcessBus(queue_size=10_000)
    subscription = bus.subscribe("c1")
    writer = asyncio.create_task(connection._write())
    forward = asyncio.create_task(connection._forward(subscription))
    for seq in range(1, SEND_QUEUE + 50):
        await bus.publish("c1", {"type": "message", "seq": seq, "role": "bot", "text": "x"})
    await asyncio.wait_for(forward, 5)  # the forwarder gives up instead of waiting
    assert ws.closed is not None and ws.closed[0] == CloseCode.SLOW_CLIENT
    assert connection.outbox.qsize() <= SEND_QUEUE
    writer.cancel()


async def test_a_served_message_logs_with_its_own_conversation_id(
    settings: Settings, shop_bundle: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Through a real server: when answering a widget message fails, the JSON log line says
    which conversation it was (set where the service starts answering), and no line names
    the other open conversation."""

    class Failing:
        """The demo bundle, except that it fails on one word."""

        version = "failing"

        def analyze(self, texts: list[str], contexts: Any = None, k: int = 5) -> Any:
            if any("explode" in text for text in texts):
                raise RuntimeError("the encoder is on fire")
            return shop_bundle.analyze(texts, contexts, k)

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        logs.configure("json", logging.INFO)
        with running_server(settings, model=Failing()) as server:
            (calm, calm_welcome), (doomed, doomed_welcome) = await asyncio.gather(
                hello(server), hello(server)
            )
            # one after the other: a failed pass fails every message in it
            assert (
                "working days"
                in (await ask(calm, "c1", "how long does delivery take?"))[-1]["text"]
            )
            assert (await ask(doomed, "d1", "please explode"))[-1]["role"] == "bot"  # an apology
            await calm.close()
            await doomed.close()
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    failed = [line for line in lines if line["message"].startswith("answering seq 1 ")]
    assert failed, lines
    assert {line["conversation_id"] for line in failed} == {doomed_welcome["conversation_id"]}
    assert calm_welcome["conversation_id"] not in {line["conversation_id"] for line in lines}


def test_json_logs_carry_the_conversation_id(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        logs.configure("json", logging.INFO)
        token = logs.conversation_id.set("abc123")
        logging.getLogger("channels.test").warning("answer failed: %s", "boom")
        logs.conversation_id.reset(token)
        logging.getLogger("channels.test").info("no conversation here")
        logging.getLogger("httpx").info("POST https://api.telegram.org/botSECRET/sendMessage")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert len(lines) == 2  # httpx's request lines (URLs may hold tokens) stay out
    assert lines[0]["message"] == "answer failed: boom"
    assert lines[0]["conversation_id"] == "abc123"
    assert lines[0]["level"] == "WARNING" and lines[0]["logger"] == "channels.test"
    assert lines[1]["conversation_id"] is None


def test_access_lines_never_hold_a_query_string(capsys: pytest.CaptureFixture[str]) -> None:
    """A webhook handshake's verify token (in its query string) stays out of the access
    log; the path and status stay in."""
    root = logging.getLogger()
    access = logging.getLogger("uvicorn.access")
    saved = root.handlers[:], root.level
    access_level = access.level  # a test server before may have set it to warning
    try:
        logs.configure("text", logging.INFO)
        access.setLevel(logging.INFO)  # what `frontdesk -v serve` does
        access.info(
            '%s - "%s %s HTTP/%s" %d',
            "127.0.0.1:5000",
            "GET",
            "/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token=SECRET&hub.challenge=42",
            "1.1",
            200,
        )
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
        access.setLevel(access_level)
    line = capsys.readouterr().err
    assert '"GET /webhooks/whatsapp HTTP/1.1" 200' in line and "SECRET" not in line


@pytest.mark.parametrize("trusted", [False, True])
async def test_x_forwarded_for_counts_only_from_a_trusted_proxy(
    settings: Settings, shop_bundle: Any, trusted: bool
) -> None:
    """By default a client cannot pick its address with X-Forwarded-For (the per-address
    limit still hits); behind a configured proxy the header names the client."""
    settings = settings.model_copy(update={"trusted_proxies": ["127.0.0.1"] if trusted else []})
    with running_server(settings, model=shop_bundle) as address:
        async with httpx.AsyncClient(timeout=30) as http:
            codes = [
                (
                    await http.post(
                        f"http://{address}/webhooks/rest/webhook",
                        json={"sender": f"r{n}", "message": "hello"},
                        headers={"X-Forwarded-For": f"203.0.113.{n}"},
                    )
                ).status_code
                for n in range(7)
            ]
    assert (429 in codes) is not trusted
