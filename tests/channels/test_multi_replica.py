"""Two real server processes on one PostgreSQL database and one Redis (DESIGN §5): clients
of one conversation on different replicas see each other live, and the conversation's
messages are answered in order whichever replica received them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from bot.types import Role
from channels.store import Store
from tests.channels.replicas import Replica, running_replicas

WAIT_S = 30.0


async def _recv(ws: ClientConnection) -> dict[str, Any]:
    frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))
    return frame


async def _until(ws: ClientConnection, want: Any) -> dict[str, Any]:
    """The first frame for which ``want(frame)`` holds (earlier ones are skipped)."""
    async with asyncio.timeout(WAIT_S):
        while True:
            frame = await _recv(ws)
            if want(frame):
                return frame


async def _open(address: str, hello: dict[str, Any]) -> tuple[ClientConnection, dict[str, Any]]:
    ws = await websockets.connect(f"ws://{address}/ws/chat")
    await ws.send(json.dumps({"type": "hello", **hello}))
    welcome = await _recv(ws)
    assert welcome["type"] == "welcome", welcome
    return ws, welcome


@pytest.fixture
async def store(postgres_database: str) -> AsyncIterator[Store]:
    """The replicas' database, read directly."""
    opened = await Store.open(postgres_database)
    yield opened
    await opened.close()


async def test_clients_on_two_replicas_see_each_others_messages_live(
    replicas: list[Replica],
) -> None:
    """A customer on replica A and a second client of the same conversation on replica B
    each receive, live, what the other wrote and the bot's answers to it."""
    a, b = replicas[0].address, replicas[1].address
    ws_a, welcome = await _open(a, {})
    conversation = {"conversation_id": welcome["conversation_id"], "token": welcome["token"]}
    ws_b, _ = await _open(b, {**conversation, "last_seq": welcome["seq"]})
    try:
        await ws_a.send(json.dumps({"type": "message", "client_id": "a1", "text": "hi there"}))
        ack = await _until(ws_a, lambda f: f["type"] == "ack")
        seen = await _until(ws_b, lambda f: f.get("client_id") == "a1")
        assert seen["seq"] == ack["seq"] and seen["role"] == "customer"
        reply = await _until(ws_b, lambda f: f["type"] == "message" and f["role"] == "bot")
        assert reply["seq"] > ack["seq"]

        text = "how long does delivery take?"
        await ws_b.send(json.dumps({"type": "message", "client_id": "b1", "text": text}))
        seen = await _until(ws_a, lambda f: f.get("client_id") == "b1")
        assert seen["text"] == text
        answer = await _until(ws_a, lambda f: f["type"] == "message" and f["role"] == "bot")
        assert answer["seq"] > seen["seq"]
    finally:
        await ws_a.close()
        await ws_b.close()


async def test_messages_sent_alternately_to_two_replicas_are_answered_in_order(
    replicas: list[Replica], store: Store
) -> None:
    """Messages of one conversation sent in turn to A and B, without waiting for answers,
    are each answered once, in the order they were accepted."""
    texts = [
        "hi there",
        "how long does delivery take?",
        "can I return a jacket that doesn't fit?",
        "when are you open on saturday?",
        "do you have a discount code?",
        "how much is shipping to Austria?",
    ]
    ws_a, welcome = await _open(replicas[0].address, {})
    conversation = {"conversation_id": welcome["conversation_id"], "token": welcome["token"]}
    ws_b, _ = await _open(replicas[1].address, {**conversation, "last_seq": welcome["seq"]})
    try:
        for i, text in enumerate(texts):
            ws = (ws_a, ws_b)[i % 2]
            await ws.send(json.dumps({"type": "message", "client_id": f"m{i}", "text": text}))
            await _until(ws, lambda f, i=i: f["type"] == "ack" and f["client_id"] == f"m{i}")
        customer: list[int] = []
        replies: list[object] = []
        async with asyncio.timeout(WAIT_S):
            while not customer or not set(customer) <= set(replies):
                await asyncio.sleep(0.2)
                events = await store.events_after(welcome["conversation_id"], 0)
                customer = [e.seq for e in events if e.role is Role.CUSTOMER]
                replies = [e.payload.get("in_reply_to") for e in events if e.role is Role.BOT]
                if any(e.kind == "status" for e in events):
                    pytest.fail(f"the bot escalated; pick other texts: {events}")
    finally:
        await ws_a.close()
        await ws_b.close()
    assert len(customer) == len(texts)
    assert replies == sorted(replies), f"answered out of order: {replies}"
    assert set(replies) == set(customer)


async def test_customer_on_one_replica_and_agent_on_the_other(
    replicas: list[Replica], store: Store
) -> None:
    """The customer escalates on replica A; an agent logged in on replica B sees it in the
    queue live, takes it, and the two talk across processes until it is handed back."""
    from channels.console.auth import hash_password
    from channels.store import AgentExists, AgentRole
    from tests.channels.test_console import PASSWORD, escalated, logged_in, now, say, until

    a, b = replicas[0].address, replicas[1].address
    email = "multi@shop.example"
    password_hash = await asyncio.to_thread(hash_password, PASSWORD)
    with contextlib.suppress(AgentExists):  # the replicas' database lives for the session
        await store.add_agent(email, "Multi", password_hash, AgentRole.AGENT, now())
    agent = await logged_in(b, email)
    console = await agent.socket()
    try:
        ws, welcome = await escalated(a)  # on A
        cid = welcome["conversation_id"]
        await until(
            console,
            lambda f: (
                f["type"] == "queue" and any(w["conversation_id"] == cid for w in f["waiting"])
            ),
            WAIT_S,
        )
        assert (await agent.post(f"/console/api/conversations/{cid}/take")).status_code == 200
        await until(ws, lambda f: f["type"] == "status" and f["status"] == "agent", WAIT_S)
        await console.send(json.dumps({"type": "watch", "conversation_id": cid}))
        await until(console, lambda f: f.get("status") == "agent", WAIT_S)

        await say(ws, "c2", "my parcel is lost")  # customer on A -> agent on B
        got = await until(
            console, lambda f: f["type"] == "message" and f["role"] == "customer", WAIT_S
        )
        assert got[-1]["text"] == "my parcel is lost"
        sent = await agent.post(  # agent on B -> customer on A
            f"/console/api/conversations/{cid}/messages", {"text": "Let me check that."}
        )
        assert sent.status_code == 200
        frames = await until(ws, lambda f: f["type"] == "message" and f["role"] != "customer")
        assert frames[-1]["role"] == "agent" and frames[-1]["text"] == "Let me check that."

        assert (await agent.post(f"/console/api/conversations/{cid}/hand-back")).status_code == 200
        await until(ws, lambda f: f["type"] == "status" and f["status"] == "bot", WAIT_S)
        await say(ws, "c3", "how long does delivery take?")
        answer = await until(ws, lambda f: f["type"] == "message" and f["role"] == "bot", WAIT_S)
        assert answer[-1]["text"]
        await ws.close()
    finally:
        await console.close()


async def test_one_server_with_two_worker_processes_answers(
    shop_home: Path,
    postgres_database: str,
    redis_url: str,
    tmp_path: Path,
) -> None:
    """``FRONTDESK_WORKERS=2``: one ``frontdesk serve`` runs two worker processes on one
    port, each with its share of the cores, and conversations opened on it are answered."""
    with running_replicas(
        shop_home,
        database_url=postgres_database,
        redis_url=redis_url,
        log_dir=tmp_path,
        count=1,
        env={"FRONTDESK_WORKERS": "2"},
    ) as (server,):
        workers = _worker_environments(server.process.pid)
        assert len(workers) == 2, server.log_tail()
        share = max(1, len(os.sched_getaffinity(0)) // 2)
        for environ in workers:
            assert f"FRONTDESK_ENCODER_THREADS={share}".encode() in environ
        for _ in range(4):  # connections land on either worker
            ws, _welcome = await _open(server.address, {})
            await ws.send(json.dumps({"type": "message", "client_id": "m1", "text": "hi"}))
            reply = await _until(ws, lambda f: f["type"] == "message" and f["role"] == "bot")
            assert reply["text"]
            await ws.close()


def _worker_environments(pid: int) -> list[list[bytes]]:
    """The environments of the worker processes ``pid`` started (uvicorn spawns them)."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(c) for c in (task / "children").read_text().split()]
    return [
        Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
        for child in children
        if "spawn_main" in Path(f"/proc/{child}/cmdline").read_text(errors="replace")
    ]
