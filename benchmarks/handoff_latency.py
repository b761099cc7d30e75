"""Human handoff latency: customer <-> agent message delivery through the console.

A customer asks for a person on the widget websocket (/ws/chat), so the conversation is
escalated; an agent logs in over HTTP, opens the console websocket (/ws/console), takes the
conversation and watches it. Then N round trips:

- customer -> agent: from the widget's ``message`` send to the ``message`` frame arriving on
  the agent's console websocket;
- agent -> customer: from sending ``POST /console/api/conversations/{id}/messages`` (with
  the CSRF token) to the ``message`` frame arriving on the widget websocket.

Two set-ups:

- ``single``: one ``frontdesk serve`` process, SQLite store in a fresh file, in-process bus;
- ``replicas``: two processes sharing a fresh PostgreSQL database (created and dropped here)
  and Redis; the customer is on process A, the agent on process B.

    python benchmarks/handoff_latency.py --home /tmp/fd-bench [--round-trips 100]
        [--setups single,replicas] [--postgres URL] [--redis URL] [--json FILE]

The home must hold a trained shop bot (benchmarks/_server.py trains one if it has none).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import websockets
from _server import Server, ensure_trained, machine, percentile, rnd
from sqlalchemy.engine import make_url

from channels.console.auth import COOKIE, hash_password
from channels.store import AgentRole, Store

PASSWORD = "benchmark password 123"
EMAIL = "bench-agent@shop.example"
DEFAULT_PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"


# --- databases ---------------------------------------------------------------------------


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextlib.asynccontextmanager
async def fresh_postgres(admin_url: str) -> AsyncIterator[str]:
    """A new, empty PostgreSQL database next to ``admin_url``'s; dropped afterwards."""
    import asyncpg

    name = f"fd_bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(_asyncpg_dsn(admin_url))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        admin = await asyncpg.connect(_asyncpg_dsn(admin_url))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def add_agent(database_url: str) -> None:
    """Register the benchmark's agent (migrates the schema if the database is new)."""
    store = await Store.open(database_url)
    try:
        password_hash = await asyncio.to_thread(hash_password, PASSWORD)
        await store.add_agent(EMAIL, "Bench", password_hash, AgentRole.AGENT, datetime.now(UTC))
    finally:
        await store.close()


# --- one measurement ---------------------------------------------------------------------


class Inbox:
    """Reads one websocket in the background; wakes whoever waits for a given text."""

    def __init__(self, ws: Any, role: str) -> None:
        self.ws = ws
        self.role = role
        self.waiters: dict[str, asyncio.Future[float]] = {}
        self.frames: list[dict[str, Any]] = []
        self.task = asyncio.create_task(self._run())

    def expect(self, text: str) -> asyncio.Future[float]:
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.waiters[text] = future
        return future

    async def _run(self) -> None:
        async for raw in self.ws:
            arrived = time.perf_counter()
            frame = json.loads(raw)
            self.frames.append(frame)
            if frame.get("type") == "message" and frame.get("role") == self.role:
                future = self.waiters.pop(str(frame.get("text")), None)
                if future is not None and not future.done():
                    future.set_result(arrived)

    async def until(self, check: Any, limit_s: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + limit_s
        seen = 0
        while time.monotonic() < deadline:
            for frame in self.frames[seen:]:
                if check(frame):
                    return frame
            seen = len(self.frames)
            if self.task.done():
                raise RuntimeError(f"socket closed: {self.task.exception()!r}")
            await asyncio.sleep(0.01)
        raise TimeoutError(f"no matching frame in {limit_s}s; last: {self.frames[-5:]}")

    async def close(self) -> None:
        await self.ws.close()
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task


async def measure(customer_addr: str, agent_addr: str, round_trips: int) -> dict[str, Any]:
    widget = await websockets.connect(f"ws://{customer_addr}/ws/chat", max_queue=None)
    await widget.send(json.dumps({"type": "hello"}))
    welcome = json.loads(await widget.recv())
    cid = welcome["conversation_id"]
    w_in = Inbox(widget, "agent")
    await widget.send(
        json.dumps({"type": "message", "client_id": "ask", "text": "I want to talk to a person"})
    )
    await w_in.until(lambda f: f.get("type") == "status" and f.get("status") == "waiting")

    http = httpx.AsyncClient(base_url=f"http://{agent_addr}", timeout=30)
    try:
        login = await http.post("/console/login", json={"email": EMAIL, "password": PASSWORD})
        login.raise_for_status()
        csrf = login.json()["csrf_token"]
        cookie = login.cookies[COOKIE]
        http.cookies.set(COOKIE, cookie)
        headers = {"X-CSRF-Token": csrf}
        console = await websockets.connect(
            f"ws://{agent_addr}/ws/console",
            additional_headers={"Cookie": f"{COOKIE}={cookie}"},
            max_queue=None,
        )
        c_in = Inbox(console, "customer")
        await c_in.until(lambda f: f.get("type") == "hello")
        # the escalation may reach B's queue only at its next poll (multi-replica)
        deadline = time.monotonic() + 30
        while True:
            take = await http.post(f"/console/api/conversations/{cid}/take", headers=headers)
            if take.status_code == 200 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        take.raise_for_status()
        await console.send(json.dumps({"type": "watch", "conversation_id": cid}))
        await w_in.until(lambda f: f.get("type") == "status" and f.get("status") == "agent")
        await asyncio.sleep(0.5)  # let the watch replay finish

        to_agent: list[float] = []
        to_customer: list[float] = []
        post_ms: list[float] = []
        warmup = 3
        for i in range(-warmup, round_trips):
            text = f"customer {i} {secrets.token_hex(4)}"
            arrived = c_in.expect(text)
            sent = time.perf_counter()
            await widget.send(json.dumps({"type": "message", "client_id": f"m{i}", "text": text}))
            at = await asyncio.wait_for(arrived, 30)
            if i >= 0:
                to_agent.append((at - sent) * 1000)

            reply = f"agent {i} {secrets.token_hex(4)}"
            arrived = w_in.expect(reply)
            sent = time.perf_counter()
            response = await http.post(
                f"/console/api/conversations/{cid}/messages",
                json={"text": reply, "source": "canned"},
                headers=headers,
            )
            posted = time.perf_counter()
            response.raise_for_status()
            at = await asyncio.wait_for(arrived, 30)
            if i >= 0:
                to_customer.append((at - sent) * 1000)
                post_ms.append((posted - sent) * 1000)
        await c_in.close()
    finally:
        await http.aclose()
        await w_in.close()

    def stats(values: list[float]) -> dict[str, Any]:
        return {
            "n": len(values),
            "p50_ms": rnd(percentile(values, 50), 2),
            "p99_ms": rnd(percentile(values, 99), 2),
            "max_ms": rnd(max(values), 2),
        }

    return {
        "customer_to_agent": stats(to_agent),
        "agent_to_customer": stats(to_customer),
        "agent_post_response": stats(post_ms),
    }


# --- set-ups -----------------------------------------------------------------------------


@contextlib.contextmanager
def stopping(*servers: Server) -> Iterator[None]:
    try:
        yield
    finally:
        for server in servers:
            server.stop()


async def run_single(home: Path, round_trips: int) -> dict[str, Any]:
    server = Server(home, label="handoff-single", env={"FRONTDESK_SECRET_KEY": "b" * 40})
    with stopping(server):
        await add_agent(server.database_url)
        await asyncio.to_thread(server.start)
        result = await measure(server.url[7:], server.url[7:], round_trips)
        result["server_log"] = server.log_summary()
    return {"setup": "single", "store": "sqlite", "bus": "in-process", **result}


async def run_replicas(
    home: Path, round_trips: int, postgres: str, redis_url: str
) -> dict[str, Any]:
    async with fresh_postgres(postgres) as database_url:
        await add_agent(database_url)  # migrates once, before the replicas start
        env = {"FRONTDESK_REDIS_URL": redis_url, "FRONTDESK_SECRET_KEY": "b" * 40}
        a = Server(home, label="handoff-A", env=env, database_url=database_url)
        b = Server(home, label="handoff-B", env=env, database_url=database_url)
        with stopping(a, b):
            await asyncio.gather(asyncio.to_thread(a.start), asyncio.to_thread(b.start))
            result = await measure(a.url[7:], b.url[7:], round_trips)
            result["server_log"] = {"A": a.log_summary(), "B": b.log_summary()}
    return {
        "setup": "replicas (A: customer, B: agent)",
        "store": "postgresql",
        "bus": "redis",
        **result,
    }


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| setup | store / bus | n | customer→agent p50 | p99 | agent→customer p50 | p99 "
        "| agent POST p50 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ca, ac, post = r["customer_to_agent"], r["agent_to_customer"], r["agent_post_response"]
        lines.append(
            f"| {r['setup']} | {r['store']} / {r['bus']} | {ca['n']} | {ca['p50_ms']} ms "
            f"| {ca['p99_ms']} ms | {ac['p50_ms']} ms | {ac['p99_ms']} ms "
            f"| {post['p50_ms']} ms |"
        )
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    results = []
    for setup in args.setups.split(","):
        started = time.perf_counter()
        if setup == "single":
            result = await run_single(args.home, args.round_trips)
        elif setup == "replicas":
            result = await run_replicas(args.home, args.round_trips, args.postgres, args.redis)
        else:
            raise SystemExit(f"unknown setup {setup!r}")
        result["wall_s"] = round(time.perf_counter() - started, 1)
        print(f"{setup}: done in {result['wall_s']} s", file=sys.stderr, flush=True)
        results.append(result)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", type=Path, default=Path("/tmp/fd-bench"))
    parser.add_argument("--round-trips", type=int, default=100)
    parser.add_argument("--setups", default="single,replicas")
    parser.add_argument("--postgres", default=DEFAULT_PG, help="admin URL (creates a db)")
    parser.add_argument("--redis", default=DEFAULT_REDIS)
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    trained = ensure_trained(args.home)
    results = asyncio.run(main_async(args))
    print(table(results))
    if args.json:
        report = {
            "benchmark": "handoff_latency",
            "round_trips": args.round_trips,
            "machine": machine(),
            "trained_s": trained,
            "results": results,
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
