"""The agent console's API and websocket over a real server, with the trained demo bot."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from bot.types import ConversationStatus
from channels.console import auth
from channels.console.auth import COOKIE, hash_password, load_secret_key
from channels.settings import Settings
from channels.store import AgentRole, Store
from tests.channels.server import running_server
from tests.channels.test_ws import until

Frame = dict[str, Any]
PASSWORD = "correct horse battery"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def settings(tmp_path: Path, shop_home: Path) -> Settings:
    return Settings(
        home=shop_home,
        bot=Path("examples/shop"),
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'store.db'}",
        secret_key="k" * 40,
        login_failures_per_address="6/minute",
        login_failures_per_account="3/minute",
        console_poll_s=0.2,
    )


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[Store]:
    opened = await Store.open(settings.store_url())
    yield opened
    await opened.close()


@pytest.fixture
async def agents(store: Store) -> dict[str, str]:
    """Five agents (ann is an admin): name -> email."""
    password_hash = await asyncio.to_thread(hash_password, PASSWORD)
    found = {}
    for i, name in enumerate(["ann", "bob", "cy", "dee", "eve"]):
        role = AgentRole.ADMIN if i == 0 else AgentRole.AGENT
        await store.add_agent(f"{name}@shop.example", name.title(), password_hash, role, now())
        found[name] = f"{name}@shop.example"
    return found


@pytest.fixture
def server(settings: Settings, shop_bundle: Any, agents: dict[str, str]) -> Iterator[str]:
    with running_server(settings, model=shop_bundle) as address:
        yield address


def now() -> datetime:
    return datetime.now(UTC)


class Agent:
    """An agent's HTTP client with its session cookie and CSRF token."""

    def __init__(self, address: str, cookie: str, csrf: str) -> None:
        self.address = address
        self.cookie = cookie
        self.csrf = csrf

    def headers(self, csrf: bool = True) -> dict[str, str]:
        headers = {"Cookie": f"{COOKIE}={self.cookie}"}
        if csrf:
            headers["X-CSRF-Token"] = self.csrf
        return headers

    async def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        async with httpx.AsyncClient(base_url=f"http://{self.address}", timeout=30) as http:
            return await http.request(method, path, json=body, headers=headers)

    async def get(self, path: str) -> httpx.Response:
        return await self.request("GET", path, headers=self.headers(False))

    async def post(self, path: str, body: Any = None) -> httpx.Response:
        return await self.request("POST", path, body, self.headers())

    async def socket(self) -> ClientConnection:
        return await websockets.connect(
            f"ws://{self.address}/ws/console", additional_headers=self.headers(False)
        )


async def login(address: str, email: str, password: str = PASSWORD) -> httpx.Response:
    async with httpx.AsyncClient(base_url=f"http://{address}", timeout=30) as http:
        return await http.post("/console/login", json={"email": email, "password": password})


async def logged_in(address: str, email: str) -> Agent:
    response = await login(address, email)
    assert response.status_code == 200, response.text
    return Agent(address, response.cookies[COOKIE], response.json()["csrf_token"])


async def customer(address: str) -> tuple[ClientConnection, Frame]:
    ws = await websockets.connect(f"ws://{address}/ws/chat")
    await ws.send(json.dumps({"type": "hello"}))
    return ws, json.loads(await ws.recv())


async def say(ws: ClientConnection, client_id: str, text: str) -> None:
    await ws.send(json.dumps({"type": "message", "client_id": client_id, "text": text}))


async def escalated(address: str) -> tuple[ClientConnection, Frame]:
    """A customer who asked for a person: the conversation waits in the queue."""
    ws, welcome = await customer(address)
    await say(ws, "c1", "I want to talk to a person")
    await until(ws, lambda f: f["type"] == "status" and f["status"] == "waiting")
    return ws, welcome


async def waiting_conversation(store: Store, text: str = "my parcel is lost") -> str:
    """A waiting conversation made in the store directly (no model in the way)."""
    record, _ = await store.create_conversation("web", now())
    await store.append_customer_message(record.id, "c1", text, now())
    await store.set_status(record.id, ConversationStatus.WAITING, reason="requested", now=now())
    return record.id


# --- login, sessions, CSRF ----------------------------------------------------------------


async def test_login_sets_a_strict_httponly_session_cookie(server: str) -> None:
    """A right password logs in: HttpOnly SameSite=Strict cookie (not Secure over http)."""
    response = await login(server, "Bob@Shop.example ")
    assert response.status_code == 200
    body = response.json()
    assert body["agent"]["name"] == "Bob" and body["agent"]["role"] == "agent"
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "secure" not in cookie
    agent = Agent(server, response.cookies[COOKIE], body["csrf_token"])
    me = await agent.get("/console/api/me")
    assert me.status_code == 200 and me.json()["csrf_token"] == body["csrf_token"]


@pytest.mark.parametrize("email", ["bob@shop.example", "nobody@shop.example"])
async def test_wrong_password_or_unknown_email_is_refused_alike(server: str, email: str) -> None:
    """A wrong password and an unknown email get the same 401 and no cookie."""
    response = await login(server, email, "not the password")
    assert response.status_code == 401
    assert response.json()["detail"] == "wrong email or password"
    assert COOKIE not in response.cookies


async def test_an_unknown_email_costs_one_verification_like_a_known_one(
    server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The decoy hash for unknown emails is made once, not per attempt: otherwise an
    unknown email would cost a hash plus a verification, twice a wrong password's time."""

    class Counting:
        def __init__(self, inner: Any) -> None:
            self.inner, self.calls = inner, {"hash": 0, "verify": 0}

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        def hash(self, password: str) -> str:
            self.calls["hash"] += 1
            return str(self.inner.hash(password))

        def verify(self, stored: str, password: str) -> bool:
            self.calls["verify"] += 1
            return bool(self.inner.verify(stored, password))

    counting = Counting(auth._hasher)
    monkeypatch.setattr(auth, "_hasher", counting)
    auth._decoy_hash.cache_clear()
    for n in range(3):
        response = await login(server, f"nobody{n}@shop.example", "not the password")
        assert response.status_code == 401
    assert counting.calls == {"hash": 1, "verify": 3}
    assert (await login(server, "bob@shop.example", "not the password")).status_code == 401
    assert counting.calls == {"hash": 1, "verify": 4}


async def test_failed_logins_are_limited_per_account(server: str) -> None:
    """After 3 failures for one account even the right password gets 429 for a while."""
    for _ in range(3):
        assert (await login(server, "cy@shop.example", "guess")).status_code == 401
    assert (await login(server, "cy@shop.example")).status_code == 429
    assert (await login(server, "dee@shop.example")).status_code == 200  # others unaffected


async def test_failed_logins_are_limited_per_address(server: str) -> None:
    """After 6 failures from one address (over many accounts) every login gets 429."""
    for i in range(6):
        assert (await login(server, f"x{i}@shop.example", "guess")).status_code == 401
    assert (await login(server, "eve@shop.example")).status_code == 429


ROUTES = [
    ("GET", "/console/api/me"),
    ("GET", "/console/api/queue"),
    ("GET", "/console/api/canned"),
    ("GET", "/console/api/intents"),
    ("GET", "/console/api/stats"),
    ("GET", "/console/api/conversations/C"),
    ("GET", "/console/api/conversations/C/suggestions"),
    ("POST", "/console/api/conversations/C/take"),
    ("POST", "/console/api/conversations/C/messages"),
    ("POST", "/console/api/conversations/C/typing"),
    ("POST", "/console/api/conversations/C/tags"),
    ("POST", "/console/api/conversations/C/hand-back"),
    ("POST", "/console/api/conversations/C/close"),
    ("POST", "/console/logout"),
]
CHANGES = [(m, p) for m, p in ROUTES if m == "POST"]
BODIES = {"messages": {"text": "hello"}, "tags": {"seq": 1, "intent": "order_status"}}


def body_for(path: str) -> Any:
    return BODIES.get(path.rsplit("/", 1)[-1])


async def test_every_console_route_needs_a_session(server: str, store: Store) -> None:
    """Without a session cookie (or with a made-up one) every console route answers 401."""
    cid = await waiting_conversation(store)
    async with httpx.AsyncClient(base_url=f"http://{server}") as http:
        for method, path in ROUTES:
            path = path.replace("/C", f"/{cid}")
            for headers in ({}, {"Cookie": f"{COOKIE}=made-up", "X-CSRF-Token": "x"}):
                response = await http.request(method, path, json=body_for(path), headers=headers)
                assert response.status_code == 401, (method, path, response.text)


async def test_console_socket_needs_a_session(server: str) -> None:
    """/ws/console without a session closes with 4401."""
    ws = await websockets.connect(f"ws://{server}/ws/console")
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


@pytest.mark.parametrize(("method", "path"), CHANGES)
async def test_changes_need_the_csrf_token(
    server: str, store: Store, method: str, path: str
) -> None:
    """A state-changing request with a session but no or a wrong CSRF token gets 403 and
    changes nothing; from another origin too."""
    cid = await waiting_conversation(store)
    agent = await logged_in(server, "bob@shop.example")
    path = path.replace("/C", f"/{cid}")
    cookie = {"Cookie": f"{COOKIE}={agent.cookie}"}
    for headers in (
        cookie,
        {**cookie, "X-CSRF-Token": "wrong"},
        {**cookie, "X-CSRF-Token": agent.csrf, "Origin": "http://evil.example"},
    ):
        response = await agent.request(method, path, body_for(path), headers)
        assert response.status_code == 403, (headers, response.text)
    record = await store.get_conversation(cid)
    assert record is not None and record.status is ConversationStatus.WAITING
    assert (await agent.get("/console/api/me")).status_code == 200  # still logged in


async def test_the_page_is_served_with_a_strict_content_policy(server: str) -> None:
    """/console and its assets are served to anyone (the page logs in), with a CSP that
    allows only its own script and no framing."""
    async with httpx.AsyncClient(base_url=f"http://{server}") as http:
        page = await http.get("/console")
        assert page.status_code == 200 and "Agent login" in page.text
        policy = page.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
        script = await http.get("/console/console.js")
        assert script.status_code == 200 and "textContent" in script.text
        assert "innerHTML" not in script.text
        assert (await http.get("/console/nothing.js")).status_code == 404


async def test_logout_ends_the_session(server: str) -> None:
    """After logout the old cookie opens nothing."""
    agent = await logged_in(server, "bob@shop.example")
    assert (await agent.post("/console/logout")).status_code == 204
    assert (await agent.get("/console/api/me")).status_code == 401


async def test_stats_are_for_admins(server: str, store: Store) -> None:
    """An agent gets 403 for the desk's numbers; an admin gets them."""
    await waiting_conversation(store)
    bob = await logged_in(server, "bob@shop.example")
    assert (await bob.get("/console/api/stats")).status_code == 403
    ann = await logged_in(server, "ann@shop.example")
    numbers = (await ann.get("/console/api/stats")).json()
    assert numbers["queue_length"] == 1 and numbers["escalations"] == {"requested": 1}


# --- the customer's side -----------------------------------------------------------------


async def test_a_token_opens_only_its_own_conversation(server: str) -> None:
    """A customer's token with another conversation's id is refused (close 4401)."""
    mine, welcome = await customer(server)
    other, theirs = await customer(server)
    await mine.close()
    await other.close()
    ws = await websockets.connect(f"ws://{server}/ws/chat")
    await ws.send(
        json.dumps(
            {
                "type": "hello",
                "conversation_id": theirs["conversation_id"],
                "token": welcome["token"],
            }
        )
    )
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


# --- desk operations ---------------------------------------------------------------------


async def test_concurrent_takes_exactly_one_wins(server: str, store: Store) -> None:
    """Five agents take one waiting conversation at once: one gets it, four get 409."""
    cid = await waiting_conversation(store)
    agents = [
        await logged_in(server, f"{n}@shop.example") for n in ["ann", "bob", "cy", "dee", "eve"]
    ]
    responses = await asyncio.gather(
        *(a.post(f"/console/api/conversations/{cid}/take") for a in agents)
    )
    codes = sorted(r.status_code for r in responses)
    assert codes == [200, 409, 409, 409, 409]
    events = await store.events_after(cid, 0)
    assert [e.payload.get("status") for e in events if e.kind == "status"] == [
        "waiting",
        "agent",
    ]
    winner = agents[[r.status_code for r in responses].index(200)]
    me = (await winner.get("/console/api/me")).json()["agent"]["id"]
    assert await store.assigned_agent(cid) == me


async def test_an_agent_handles_a_conversation_end_to_end(server: str, store: Store) -> None:
    """Queue (with the reason) live on the agent socket, take, suggestions, reply linked to
    the customer turn, typing both ways, tag, hand back: the bot answers again."""
    bob = await logged_in(server, "bob@shop.example")
    console = await bob.socket()
    assert json.loads(await console.recv())["type"] == "hello"
    first = await until(console, lambda f: f["type"] == "queue")
    assert first[-1]["waiting"] == []

    ws, welcome = await escalated(server)
    cid = welcome["conversation_id"]
    frames = await until(console, lambda f: f["type"] == "queue" and f["waiting"])
    entry = frames[-1]["waiting"][0]
    assert entry["conversation_id"] == cid and entry["reason"] == "requested"
    assert entry["last_customer_text"] == "I want to talk to a person"

    assert (await bob.post(f"/console/api/conversations/{cid}/take")).status_code == 200
    await until(ws, lambda f: f["type"] == "status" and f["status"] == "agent")
    frames = await until(console, lambda f: f["type"] == "queue" and f["mine"])
    assert frames[-1]["waiting"] == [] and frames[-1]["mine"][0]["conversation_id"] == cid

    await console.send(json.dumps({"type": "watch", "conversation_id": cid}))
    replayed = await until(console, lambda f: f.get("status") == "agent")
    assert replayed[0]["seq"] == 1 and all(f["conversation_id"] == cid for f in replayed)

    history = (await bob.get(f"/console/api/conversations/{cid}")).json()
    customer_seq = history["events"][0]["seq"]
    assert history["events"][0]["text"] == "I want to talk to a person"

    suggestions = (await bob.get(f"/console/api/conversations/{cid}/suggestions")).json()
    assert suggestions["suggestions"], "agent assist offers something"
    assert {s["source"] for s in suggestions["suggestions"]} <= {"retrieval", "intent"}

    # the customer types: the console sees it; the widget does not get its own typing back
    await ws.send(json.dumps({"type": "typing"}))
    await until(console, lambda f: f["type"] == "typing" and f["role"] == "customer")
    await say(ws, "c2", "my order 1042 never arrived")
    got = await until(console, lambda f: f["type"] == "message" and f["role"] == "customer")
    second_seq = got[-1]["seq"]

    assert (await bob.post(f"/console/api/conversations/{cid}/typing")).status_code == 204
    await until(ws, lambda f: f["type"] == "typing" and f["role"] == "agent")
    text = suggestions["suggestions"][0]["text"]
    sent = await bob.post(
        f"/console/api/conversations/{cid}/messages",
        {"text": text, "source": suggestions["suggestions"][0]["source"]},
    )
    assert sent.status_code == 200 and sent.json()["in_reply_to"] == second_seq
    frames = await until(ws, lambda f: f["type"] == "message" and f["role"] == "agent")
    assert frames[-1]["text"] == text
    assert all(not (f["type"] == "typing" and f["role"] == "customer") for f in frames)
    stored = [e for e in await store.events_after(cid, 0) if e.role and e.role.value == "agent"]
    assert stored[0].payload["in_reply_to"] == second_seq

    tagged = await bob.post(
        f"/console/api/conversations/{cid}/tags", {"seq": customer_seq, "intent": "lost_parcel"}
    )
    assert tagged.status_code == 200
    assert [(t.seq, t.intent) for t in await store.intent_tags_of(cid)] == [
        (customer_seq, "lost_parcel")
    ]
    bad = await bob.post(f"/console/api/conversations/{cid}/tags", {"seq": 2, "intent": "x"})
    assert bad.status_code == 422  # seq 2 is the bot's handoff message, not a customer turn

    # another agent cannot write into Bob's conversation
    cy = await logged_in(server, "cy@shop.example")
    other = await cy.post(f"/console/api/conversations/{cid}/messages", {"text": "hi"})
    assert other.status_code == 403

    assert (await bob.post(f"/console/api/conversations/{cid}/hand-back")).status_code == 200
    await until(ws, lambda f: f["type"] == "status" and f["status"] == "bot")
    await say(ws, "c3", "how long does delivery take?")
    answer = await until(ws, lambda f: f["type"] == "message" and f["role"] == "bot")
    assert "working days" in answer[-1]["text"]
    await console.close()
    await ws.close()


async def test_close_from_the_queue_and_canned_responses(server: str, store: Store) -> None:
    """Canned responses come from the bot folder; closing a conversation tells the widget."""
    cid = await waiting_conversation(store)
    bob = await logged_in(server, "bob@shop.example")
    canned = (await bob.get("/console/api/canned")).json()["canned"]
    assert canned and {"title", "text"} <= set(canned[0])
    assert (await bob.post(f"/console/api/conversations/{cid}/close")).status_code == 200
    record = await store.get_conversation(cid)
    assert record is not None and record.status is ConversationStatus.CLOSED
    again = await bob.post(f"/console/api/conversations/{cid}/take")
    assert again.status_code == 409


# --- the CLI and the secret key ----------------------------------------------------------


def test_agents_add_reads_the_password_from_stdin(tmp_path: Path) -> None:
    """`frontdesk agents add --password-stdin` registers an agent; a second one with the same
    email is refused; a short password too."""
    env = {**os.environ, "FRONTDESK_HOME": str(tmp_path)}
    command = [sys.executable, "-m", "channels.cli", "agents", "add", "--email", "a@x.example"]
    run = [*command, "--name", "Ann", "--role", "admin", "--password-stdin", "--json"]
    done = subprocess.run(
        run, input=PASSWORD + "\n", capture_output=True, text=True, env=env, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["role"] == "admin"
    again = subprocess.run(
        run, input=PASSWORD + "\n", capture_output=True, text=True, env=env, cwd=ROOT
    )
    assert again.returncode == 2 and "exists already" in again.stderr
    short = [*command[:-1], "b@x.example", "--name", "B", "--password-stdin"]
    weak = subprocess.run(short, input="short\n", capture_output=True, text=True, env=env, cwd=ROOT)
    assert weak.returncode == 2 and "at least" in weak.stderr


def test_secret_key_is_generated_once_and_private(tmp_path: Path) -> None:
    """Without FRONTDESK_SECRET_KEY a key is made in FRONTDESK_HOME (0600) and reused."""
    first = load_secret_key(Settings(home=tmp_path))
    assert load_secret_key(Settings(home=tmp_path)) == first and len(first) >= 32
    assert stat.S_IMODE((tmp_path / "secret_key").stat().st_mode) == 0o600
    assert load_secret_key(Settings(home=tmp_path, secret_key="s" * 40)) == b"s" * 40


async def test_customer_rates_a_closed_conversation(server: str, store: Store) -> None:
    """A `rate` frame is refused while the conversation is open, and stored after the close;
    the admin's numbers include it."""
    ws, welcome = await escalated(server)
    cid = welcome["conversation_id"]
    await ws.send(json.dumps({"type": "rate", "stars": 4}))
    refused = await until(ws, lambda f: f["type"] == "error")
    assert refused[-1]["code"] == "bad_frame" and "closed" in refused[-1]["message"]
    ann = await logged_in(server, "ann@shop.example")
    assert (await ann.post(f"/console/api/conversations/{cid}/close")).status_code == 200
    await until(ws, lambda f: f["type"] == "status" and f["status"] == "closed")
    await ws.send(json.dumps({"type": "rate", "stars": 6}))
    assert (await until(ws, lambda f: f["type"] == "error"))[-1]["code"] == "bad_frame"
    await ws.send(json.dumps({"type": "rate", "stars": 4}))
    assert (await until(ws, lambda f: f["type"] == "rated"))[-1]["stars"] == 4
    assert await store.rating_of(cid) == 4
    numbers = (await ann.get("/console/api/stats")).json()
    assert numbers["ratings"] == 1 and numbers["average_rating"] == 4.0
    await ws.close()


# --- hostile input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        '{"email": "bob@shop.example", "password": "\\ud800"}',
        '{"email": "\\ud800@shop.example", "password": "x"}',
        '{"email": NaN, "password": "x"}',
        '{"email": "bob@shop.example", "password": "a\\u0000b"}',
    ],
)
async def test_a_login_body_that_is_not_text_gets_a_4xx_not_a_5xx(
    server: str, agents: dict[str, str], body: str
) -> None:
    async with httpx.AsyncClient(base_url=f"http://{server}", timeout=30) as http:
        response = await http.post(
            "/console/login", content=body, headers={"content-type": "application/json"}
        )
    assert 400 <= response.status_code < 500
    assert (await login(server, "bob@shop.example")).status_code == 200  # the server is fine


async def test_bad_watch_frames_get_errors_and_the_socket_stays(
    server: str, agents: dict[str, str], store: Store
) -> None:
    """last_seq Infinity, 1e400 or -1, a conversation id with a NUL, a frame nested too deep:
    each an error frame; the agent's socket then watches a real conversation."""
    bob = await logged_in(server, "bob@shop.example")
    console = await bob.socket()
    await until(console, lambda f: f["type"] == "queue")
    cid = await waiting_conversation(store)
    frames = [
        f'{{"type": "watch", "conversation_id": "{cid}", "last_seq": Infinity}}',
        f'{{"type": "watch", "conversation_id": "{cid}", "last_seq": 1e400}}',
        json.dumps({"type": "watch", "conversation_id": cid, "last_seq": -1}),
        json.dumps({"type": "watch", "conversation_id": "a\x00b"}),
        "[" * 2000 + "]" * 2000,  # under the 4096-character limit, deeper than json parses
    ]
    for raw in frames:
        await console.send(raw)
        error = await until(console, lambda f: f["type"] == "error")
        assert error[-1]["code"] == "bad_frame"
    await console.send(json.dumps({"type": "watch", "conversation_id": cid}))
    replay = await until(console, lambda f: f["type"] == "message")
    assert replay[-1]["conversation_id"] == cid
    await console.close()


# --- who reads what ----------------------------------------------------------------------


async def test_an_agent_reads_the_queue_and_their_own_only_admins_read_all(
    server: str, agents: dict[str, str], store: Store
) -> None:
    """Bob (an agent) reads a waiting conversation and his own, not a bot-only one nor
    Cy's, over the API and the console socket; Ann (an admin) reads them all. Bob's watch
    of a waiting conversation ends when Cy takes it."""
    bob = await logged_in(server, "bob@shop.example")
    cy = await logged_in(server, "cy@shop.example")
    ann = await logged_in(server, "ann@shop.example")
    waiting = await waiting_conversation(store, "where is my parcel?")
    bots, _ = await store.create_conversation("web", now())
    await store.append_customer_message(bots.id, "c1", "hello", now())
    cys = await waiting_conversation(store, "refund please")
    assert (await cy.post(f"/console/api/conversations/{cys}/take")).status_code == 200
    mine = await waiting_conversation(store, "wrong size")
    assert (await bob.post(f"/console/api/conversations/{mine}/take")).status_code == 200

    for path in ("", "/suggestions"):
        assert (await bob.get(f"/console/api/conversations/{waiting}{path}")).status_code == 200
        assert (await bob.get(f"/console/api/conversations/{mine}{path}")).status_code == 200
        assert (await bob.get(f"/console/api/conversations/{bots.id}{path}")).status_code == 403
        assert (await bob.get(f"/console/api/conversations/{cys}{path}")).status_code == 403
        for cid in (waiting, mine, bots.id, cys):
            assert (await ann.get(f"/console/api/conversations/{cid}{path}")).status_code == 200

    console = await bob.socket()
    await until(console, lambda f: f["type"] == "queue")
    for cid in (bots.id, cys):
        await console.send(json.dumps({"type": "watch", "conversation_id": cid}))
        error = await until(console, lambda f: f["type"] == "error")
        assert error[-1]["code"] == "forbidden"
    await console.send(json.dumps({"type": "watch", "conversation_id": waiting}))
    await until(console, lambda f: f["type"] == "message" and f["conversation_id"] == waiting)
    assert (await cy.post(f"/console/api/conversations/{waiting}/take")).status_code == 200
    frames = await until(console, lambda f: f["type"] == "error")
    assert frames[-1]["code"] == "forbidden"
    await console.close()
