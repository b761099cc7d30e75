"""Open-loop load through the widget websocket `/ws/chat`, full pipeline (issue 5).

Serves `examples/shop` (intents + dialogue index: every message goes through the encoder,
the intent head, retrieval and the ranker) with `frontdesk serve` in a subprocess, and drives
it from separate client processes (`--client-procs`, multiprocessing): many concurrent
conversations (`--connections`, each opened with `hello`), messages scheduled by a clock at
fixed rates regardless of the replies (Poisson arrivals by default), texts drawn from
realistic shop questions.

Matching a reply to its message: each connection has at most one message outstanding, as a
customer waits for the answer before writing again: a message goes to an idle connection
(round-robin over the idle ones), and its reply is the first bot `message` (or a hand-off
`status`) frame with a `seq` above the `ack`'s seq (bot frames also carry `in_reply_to`,
which this client does not need). When every connection is busy, the message waits in the
client for the next idle one ("deferred"); its latency is then also reported from its
scheduled time ("p99 sched", which includes that wait and the client's own lateness).
So the client never has more than `--connections` messages in flight: past the server's
capacity the send-to-reply latency levels off near connections / throughput, and the excess
shows in "deferred" and "p99 sched". After each window the client waits up to
2 x `--timeout` + 5 s for the answers (and deferred messages) still due; what is then still
unanswered or unsent is "unfinished", and the next window starts once the server is idle
again ("server busy after").
Conversations are restarted (new connection, new `hello`) every `--turns` messages, and after
a hand-off to a person (the bot no longer answers there). The first conversations start at
staggered turn counts (connection i as if i % `--turns` messages in), so that the restarts
spread out; `--no-stagger` starts them all at 0, as before session 10: the connections then
take turns in step and all restart within about a second every `--turns` rounds, a burst of
new conversations that stalls the server for about half a second (BENCHMARKS.md, issue 5).

Latency is from the `send` of the customer message to the arrival of the bot's frame. CPU:
the client processes' own (getrusage) and the server's (/proc/<pid>/stat), over each window.

    python benchmarks/load_ws.py --home /tmp/fd-home --rates 100,200,300,400,500,600
    python benchmarks/load_ws.py --home /tmp/fd-home --compare-batching 300
    python benchmarks/load_ws.py --home /tmp/fd-home --compare-batching 60,120 \
        --settings 'FRONTDESK_ENCODER_INT8=false|FRONTDESK_ENCODER_INT8=true'
    python benchmarks/load_ws.py --home /tmp/fd-home --rates '' --idle 300

`--home` is trained (`frontdesk train --bot examples/shop`) when it has no model yet, and
reused as it is otherwise; without it, a fresh temporary home is trained.

The store is a fresh SQLite file in FRONTDESK_HOME/bench for every server start (one
fsync'd commit per write, as the default store), unless `--database-url` is given.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import multiprocessing as mp
import random
import resource
import sys
import tempfile
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection as Pipe
from pathlib import Path
from typing import Any

import websockets
from _server import (
    Server,
    ensure_trained,
    machine,
    metrics_delta,
    percentile,
    raise_nofile,
    rnd,
)
from websockets.exceptions import ConnectionClosed

# Paraphrases of the shop bot's intents (examples/shop/bot.yml) and of its past chats
# (dialogues.jsonl), a few of them long. Nothing here asks for a person or complains: that
# hands the conversation over and the bot stops answering in it. About one in ten of these
# gets a "not quite sure what you mean" clarification from the demo bot (checked
# 2026-11-30), and two of those in a row hand the conversation over (low confidence): the
# client then starts a new conversation; "hand-offs" in the output counts them.
TEXTS = [
    "hi",
    "hello, is anyone there?",
    "good morning! I have a question",
    "thanks, that's great",
    "that's all, thanks. bye!",
    "where is my order 1042?",
    "can you tell me what's happening with order 2001",
    "has order 3151 been sent out yet?",
    "where is order 4711? I ordered a lamp last Tuesday and I haven't had a shipping email yet",
    "when is order 1043 going to arrive?",
    "my order was supposed to arrive yesterday and it still hasn't come",
    "how long does shipping usually take?",
    "if I order today will it be here by friday",
    "do you deliver to Austria and how long does that take?",
    "do you ship on saturdays",
    "how long does delivery to Switzerland take?",
    "how much do you charge for shipping?",
    "is delivery free if I spend more than 50 euros?",
    "what does express delivery cost within Germany",
    "I'd like to send back a pair of trousers that are too long, how do I do that?",
    "what is your returns policy",
    "do I have to pay for the return label?",
    "Hi, I bought two cushion covers and a throw three weeks ago, and the throw is not the "
    "colour I expected from the photos. Can I still return just the throw, and will you "
    "refund the shipping cost too?",
    "can I swap my jumper for a bigger size",
    "I sent my parcel back 10 days ago and still haven't got my money",
    "how long until I see the refund on my credit card?",
    "will my refund go back to paypal?",
    "my card keeps getting declined at checkout",
    "the payment page gives me an error when I try to pay with Apple Pay",
    "I was charged twice for one order, can you refund the duplicate payment?",
    "I need to change the delivery address on my order",
    "I typed the wrong postcode, can you fix it?",
    "can I cancel the order I placed an hour ago?",
    "please cancel order 2002, I don't need it anymore",
    "I can't log in to my account",
    "the password reset email never arrives, I checked spam as well",
    "what time does your customer service close today?",
    "are you open on sundays",
    "what's your email address?",
    "how can I get in touch with you by phone",
    "is there a discount code for first orders?",
    "my voucher code isn't working",
    "is the oak side table back in stock?",
    "do you have the linen sheets in king size",
    "my vase arrived broken",
    "one of the glasses in my set was cracked when I opened the box",
    "you sent me the wrong colour",
    "do you offer gift wrapping?",
    "I need an invoice with my company name and VAT number for order 3150, the current "
    "one only has my private name on it",
    "are you a bot?",
    "Hello! I'm buying a birthday present for my sister, can you ship it straight to her "
    "address in Munich? And could you leave the prices off the delivery note please?",
    "do you have a physical shop in Hamburg?",
    "can I pick up my order in Hamburg instead of having it delivered?",
    "does the oak side table come assembled?",
    "I bought a jacket 5 weeks ago and never wore it, can I still return it?",
    "what payment methods do you accept",
]

HELLO = json.dumps({"type": "hello"})


# ---------------------------------------------------------------------------------------
# client side (runs in the worker processes; `--idle` runs it in the main process)


@dataclass
class WorkerOptions:
    url: str
    connections: int
    timeout_s: float = 10.0
    turns: int = 10
    stagger: bool = True
    open_concurrency: int = 50
    compression: str | None = "deflate"
    texts: list[str] = field(default_factory=lambda: list(TEXTS))


@dataclass
class Window:
    rate: float  # this worker's share, messages/s
    seconds: float
    start_at: float  # time.monotonic() (CLOCK_MONOTONIC, the same in every process)
    arrivals: str  # poisson | uniform
    seed: int


class Pending:
    __slots__ = ("ack_seq", "client_id", "fut")

    def __init__(self, client_id: str) -> None:
        self.client_id = client_id
        self.ack_seq: int | None = None
        self.fut: asyncio.Future[tuple[str, float]] = asyncio.get_running_loop().create_future()

    def resolve(self, kind: str, at: float) -> None:
        if not self.fut.done():
            self.fut.set_result((kind, at))


class Conn:
    def __init__(self, worker: Worker, index: int) -> None:
        self.worker = worker
        self.index = index
        self.ws: Any = None
        self.reader: asyncio.Task[None] | None = None
        self.pending: Pending | None = None
        self.turns = 0
        self.stale = False  # needs a new conversation before the next message
        self.closed = True

    async def open(self) -> float:
        """Connect and say hello; returns seconds from connect to `welcome`."""
        start = time.monotonic()
        opts = self.worker.opts
        self.ws = await websockets.connect(
            opts.url, open_timeout=30, ping_interval=None, compression=opts.compression
        )
        await self.ws.send(HELLO)
        frame = json.loads(await asyncio.wait_for(self.ws.recv(), 30))
        if frame.get("type") != "welcome":
            raise RuntimeError(f"expected welcome, got {frame}")
        self.turns = 0
        self.stale = False
        self.closed = False
        self.reader = asyncio.create_task(self._read())
        return time.monotonic() - start

    async def close(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 5)
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.reader
        self.closed = True

    async def reopen(self) -> None:
        await self.close()
        await self.open()
        self.worker.reconnects += 1

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                self._on_frame(json.loads(raw), time.monotonic())
        except ConnectionClosed:
            pass
        finally:
            self.closed = True
            code = getattr(self.ws, "close_code", None)
            if code not in (None, 1000):
                self.worker.close_codes[str(code)] += 1
            if self.pending is not None:
                self.pending.resolve("closed", time.monotonic())

    def _on_frame(self, frame: dict[str, Any], now: float) -> None:
        kind = frame.get("type")
        p = self.pending
        if kind == "ack":
            if p is not None and frame.get("client_id") == p.client_id:
                p.ack_seq = int(frame["seq"])
        elif kind == "message":
            if frame.get("role") == "customer":
                return  # the echo of our own message
            if p is not None and p.ack_seq is not None and int(frame.get("seq", -1)) > p.ack_seq:
                p.resolve("reply", now)
            else:
                self.worker.stale_frames += 1  # a later part of an earlier answer
        elif kind == "status":
            if frame.get("status") != "bot":
                self.stale = True  # handed to a person: the bot says nothing more here
                self.worker.handoffs += 1
                if p is not None:
                    p.resolve("handoff", now)
        elif kind == "error":
            self.worker.error_frames[str(frame.get("code"))] += 1
            if p is not None:
                p.resolve("error", now)


class Worker:
    def __init__(self, opts: WorkerOptions, index: int = 0) -> None:
        self.opts = opts
        self.index = index
        self.conns = [Conn(self, i) for i in range(opts.connections)]
        self.idle: deque[Conn] = deque()
        self.backlog: deque[tuple[str, float]] = deque()
        self.tasks: set[asyncio.Task[None]] = set()
        self.ids = itertools.count()
        self._reset()

    def _reset(self) -> None:
        self.records: list[tuple[float, float, float, str]] = []  # sched, send, recv, kind
        self.deferred = 0
        self.stale_frames = 0
        self.handoffs = 0
        self.reconnects = 0
        self.connect_errors = 0
        self.error_frames: Counter[str] = Counter()
        self.close_codes: Counter[str] = Counter()

    async def open_all(self) -> dict[str, Any]:
        gate = asyncio.Semaphore(self.opts.open_concurrency)
        failures: Counter[str] = Counter()
        times: list[float] = []

        async def one(conn: Conn) -> None:
            async with gate:
                try:
                    times.append(await conn.open())
                    # staggered: each connection's first conversation is already some turns
                    # in, so that the restarts spread out as real customers' do instead of
                    # all connections restarting within the same second
                    conn.turns = conn.index % self.opts.turns if self.opts.stagger else 0
                    self.idle.append(conn)
                except Exception as exc:
                    failures[type(exc).__name__] += 1

        start = time.monotonic()
        await asyncio.gather(*(one(c) for c in self.conns))
        return {
            "opened": len(times),
            "failures": dict(failures),
            "seconds": time.monotonic() - start,
        }

    async def close_all(self) -> None:
        gate = asyncio.Semaphore(200)

        async def one(conn: Conn) -> None:
            async with gate:
                await conn.close()

        await asyncio.gather(*(one(c) for c in self.conns))

    # scheduling ------------------------------------------------------------------------

    def submit(self, text: str, sched: float) -> None:
        if self.idle:
            self._spawn(self.idle.popleft(), text, sched)
        else:
            self.backlog.append((text, sched))
            self.deferred += 1

    def release(self, conn: Conn) -> None:
        if self.backlog:
            text, sched = self.backlog.popleft()
            self._spawn(conn, text, sched)
        else:
            self.idle.append(conn)

    def _spawn(self, conn: Conn, text: str, sched: float) -> None:
        task = asyncio.create_task(self._exchange(conn, text, sched))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _exchange(self, conn: Conn, text: str, sched: float) -> None:
        kind, sent, got = "closed", time.monotonic(), float("nan")
        try:
            if conn.closed or conn.stale or conn.turns >= self.opts.turns:
                try:
                    await conn.reopen()
                except Exception:
                    self.connect_errors += 1
                    kind = "connect_error"
                    return
            pending = Pending(f"w{self.index}-{next(self.ids)}")
            conn.pending = pending
            frame = {"type": "message", "client_id": pending.client_id, "text": text}
            sent = time.monotonic()
            try:
                await conn.ws.send(json.dumps(frame))
                kind, got = await asyncio.wait_for(asyncio.shield(pending.fut), self.opts.timeout_s)
            except TimeoutError:
                kind = "timeout"
            except ConnectionClosed:
                kind = "closed"
            except asyncio.CancelledError:
                kind = "cancelled"  # still unanswered at the end of the drain
                raise
        finally:
            conn.pending = None
            conn.turns += 1
            if kind != "reply":
                conn.stale = True  # a late answer would be taken for the next message's
            self.records.append((sched, sent, got, kind))
            self.release(conn)

    # one measurement window ------------------------------------------------------------

    async def run_window(self, w: Window) -> dict[str, Any]:
        self._reset()
        rng = random.Random(w.seed)
        texts = self.opts.texts
        end = w.start_at + w.seconds
        lags: list[float] = []
        await asyncio.sleep(max(0.0, w.start_at - time.monotonic()))
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        t = w.start_at + (rng.random() / w.rate if w.arrivals == "uniform" else 0.0)
        scheduled = 0
        while True:
            t += rng.expovariate(w.rate) if w.arrivals == "poisson" else 1.0 / w.rate
            if t >= end:
                break
            delay = t - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            lags.append(time.monotonic() - t)
            self.submit(texts[rng.randrange(len(texts))], t)
            scheduled += 1
        await asyncio.sleep(max(0.0, end - time.monotonic()))
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        # let the answers in flight (and the deferred messages) finish
        deadline = end + 2 * self.opts.timeout_s + 5
        while self.tasks and (left := deadline - time.monotonic()) > 0:
            # a finishing exchange hands its connection to the next deferred message
            await asyncio.wait(list(self.tasks), timeout=left, return_when=asyncio.FIRST_COMPLETED)
        unsent = len(self.backlog)
        self.backlog.clear()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        kinds = Counter(kind for *_, kind in self.records)
        replies = [(s, a, b) for s, a, b, k in self.records if k == "reply"]
        return {
            "scheduled": scheduled,
            "sent": sum(1 for _, a, _, k in self.records if k != "connect_error"),
            "kinds": dict(kinds),
            "lat_send_ms": [(b - a) * 1000 for _, a, b in replies],
            "lat_sched_ms": [(b - s) * 1000 for s, _, b in replies],
            "replies_in_window": sum(1 for *_, b in replies if b < end),
            "deferred": self.deferred,
            "unsent": unsent,
            "stale_frames": self.stale_frames,
            "handoffs": self.handoffs,
            "reconnects": self.reconnects,
            "error_frames": dict(self.error_frames),
            "close_codes": dict(self.close_codes),
            "client_cpu_s": (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime),
            "lag_ms": [x * 1000 for x in lags],
        }

    async def sequential(self, n: int, seed: int = 0) -> list[float]:
        """``n`` messages one at a time on one connection; latencies (ms) of the replies."""
        rng = random.Random(seed)
        latencies: list[float] = []
        for _ in range(n):
            if not self.idle:
                raise RuntimeError("no open connection")
            self.submit(rng.choice(self.opts.texts), time.monotonic())
            while self.tasks:
                await asyncio.gather(*list(self.tasks))
            await asyncio.sleep(0.03)  # let any rest of the answer arrive before the next
        for _, a, b, kind in self.records:
            if kind == "reply":
                latencies.append((b - a) * 1000)
        return latencies


def worker_main(pipe: Pipe, opts: WorkerOptions, index: int) -> None:
    raise_nofile()
    asyncio.run(_worker_loop(pipe, opts, index))


async def _worker_loop(pipe: Pipe, opts: WorkerOptions, index: int) -> None:
    loop = asyncio.get_running_loop()
    worker = Worker(opts, index)
    while True:
        command, arg = await loop.run_in_executor(None, pipe.recv)
        if command == "open":
            pipe.send(await worker.open_all())
        elif command == "run":
            pipe.send(await worker.run_window(arg))
        elif command == "close":
            await worker.close_all()
            pipe.send({"closed": True})
            return


# ---------------------------------------------------------------------------------------
# orchestration (main process)


class ClientPool:
    """``procs`` worker processes sharing ``connections`` between them."""

    def __init__(self, opts: WorkerOptions, procs: int) -> None:
        ctx = mp.get_context("spawn")
        self.pipes: list[Pipe] = []
        self.procs: list[Any] = []
        shares = [opts.connections // procs + (i < opts.connections % procs) for i in range(procs)]
        for i, share in enumerate(shares):
            mine, theirs = ctx.Pipe()
            sub = WorkerOptions(**{**asdict(opts), "connections": share})
            proc = ctx.Process(target=worker_main, args=(theirs, sub, i), daemon=True)
            proc.start()
            self.pipes.append(mine)
            self.procs.append(proc)

    def _all(self, commands: list[tuple[str, Any]], timeout_s: float) -> list[dict[str, Any]]:
        for pipe, command in zip(self.pipes, commands, strict=True):
            pipe.send(command)
        results = []
        deadline = time.monotonic() + timeout_s
        for pipe in self.pipes:
            if not pipe.poll(max(0.0, deadline - time.monotonic())):
                raise TimeoutError(f"client worker did not answer {commands[0][0]!r}")
            results.append(pipe.recv())
        return results

    def open(self) -> dict[str, Any]:
        results = self._all([("open", None)] * len(self.pipes), 600)
        failures: Counter[str] = Counter()
        for r in results:
            failures.update(r["failures"])
        return {
            "opened": sum(r["opened"] for r in results),
            "failures": dict(failures),
            "seconds": round(max(r["seconds"] for r in results), 2),
        }

    def run(
        self,
        server: Server,
        rate: float,
        seconds: float,
        *,
        arrivals: str,
        seed: int,
        timeout_s: float,
    ) -> dict[str, Any]:
        n = len(self.pipes)
        start_at = time.monotonic() + 1.0
        windows = [
            ("run", Window(rate / n, seconds, start_at, arrivals, seed * 1000 + i))
            for i in range(n)
        ]
        for pipe, command in zip(self.pipes, windows, strict=True):
            pipe.send(command)
        m0 = server.metrics()
        time.sleep(max(0.0, start_at - time.monotonic()))
        cpu0 = server.cpu_seconds()
        time.sleep(max(0.0, start_at + seconds - time.monotonic()))
        cpu1 = server.cpu_seconds()
        m1 = server.metrics()
        results = []
        for pipe in self.pipes:
            if not pipe.poll(seconds + 3 * timeout_s + 60):
                raise TimeoutError("client worker did not finish its window")
            results.append(pipe.recv())
        row = summarize(rate, seconds, results, cpu1 - cpu0, metrics_delta(m0, m1))
        # a window that overloaded the server leaves it work (answers nobody waits for any
        # more): let it finish before the next window starts
        row["server_busy_after_s"] = round(server.wait_quiet(), 1)
        return row

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._all([("close", None)] * len(self.pipes), 60)
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.terminate()


def summarize(
    rate: float,
    seconds: float,
    results: list[dict[str, Any]],
    server_cpu_s: float,
    server_metrics: dict[str, Any],
) -> dict[str, Any]:
    def total(key: str) -> int:
        return sum(r[key] for r in results)

    def merged(key: str) -> dict[str, int]:
        out: Counter[str] = Counter()
        for r in results:
            out.update(r[key])
        return dict(out)

    lat = [x for r in results for x in r["lat_send_ms"]]
    lat_sched = [x for r in results for x in r["lat_sched_ms"]]
    lags = [x for r in results for x in r["lag_ms"]]
    kinds = merged("kinds")
    client_cpu = sum(r["client_cpu_s"] for r in results)
    return {
        "offered_per_s": rate,
        "seconds": seconds,
        "scheduled": total("scheduled"),
        "sent": total("sent"),
        "answered": kinds.get("reply", 0),
        "replies_per_s": round(total("replies_in_window") / seconds, 1),
        "p50_ms": rnd(percentile(lat, 50)),
        "p90_ms": rnd(percentile(lat, 90)),
        "p99_ms": rnd(percentile(lat, 99)),
        "max_ms": rnd(max(lat) if lat else None),
        "p99_sched_ms": rnd(percentile(lat_sched, 99)),
        "deferred": total("deferred"),
        "unsent": total("unsent"),
        "unfinished": total("unsent") + kinds.get("cancelled", 0),
        "timeouts": kinds.get("timeout", 0),
        "errors": sum(v for k, v in kinds.items() if k in {"error", "closed", "connect_error"}),
        "outcomes": kinds,
        "handoffs": total("handoffs"),
        "reconnects": total("reconnects"),
        "stale_frames": total("stale_frames"),
        "error_frames": merged("error_frames"),
        "close_codes": merged("close_codes"),
        "client_lag_p99_ms": rnd(percentile(lags, 99)),
        "client_lag_max_ms": rnd(max(lags) if lags else None),
        "client_cpu_s": round(client_cpu, 2),
        "server_cpu_s": round(server_cpu_s, 2),
        "server_cores": round(server_cpu_s / seconds, 2),
        **server_metrics,
    }


async def _idle_measure(url: str, n: int, opts: WorkerOptions) -> dict[str, Any]:
    worker = Worker(WorkerOptions(**{**asdict(opts), "url": url, "connections": 1}))
    opened = await worker.open_all()
    if not opened["opened"]:
        raise RuntimeError(f"could not open a connection: {opened}")
    await worker.sequential(min(20, n), seed=1)  # warm-up
    worker._reset()
    lat = await worker.sequential(n, seed=2)
    await worker.close_all()
    return {
        "messages": n,
        "answered": len(lat),
        "p50_ms": rnd(percentile(lat, 50)),
        "p99_ms": rnd(percentile(lat, 99)),
        "mean_ms": rnd(sum(lat) / len(lat) if lat else None),
        "max_ms": rnd(max(lat) if lat else None),
    }


def settings_env(text: str) -> dict[str, str]:
    """'NAME=VALUE,NAME=VALUE' -> the server environment it sets."""
    env = {}
    for pair in text.split(","):
        name, sep, value = pair.strip().partition("=")
        if not sep or not name:
            raise SystemExit(f"--settings: expected NAME=VALUE, got {pair!r}")
        env[name] = value
    return env


def batching_env(wait_ms: float | None, size: int | None) -> dict[str, str]:
    env = {}
    if wait_ms is not None:
        env["FRONTDESK_BATCH_WAIT_MS"] = str(wait_ms)
    if size is not None:
        env["FRONTDESK_BATCH_SIZE"] = str(size)
    return env


def run_config(
    args: argparse.Namespace,
    label: str,
    env: dict[str, str],
    rates: list[float],
    *,
    idle: int,
) -> tuple[dict[str, Any] | None, list[dict[str, Any]], dict[str, Any]]:
    """One server start: the idle measure, a warm-up, then each rate in turn."""
    server = Server(args.home, label=label, env=env, database_url=args.database_url)
    server.start()
    rows: list[dict[str, Any]] = []
    idle_result = None
    opts = WorkerOptions(
        url=server.ws_url,
        connections=args.connections,
        timeout_s=args.timeout,
        turns=args.turns,
        stagger=args.stagger,
        compression=None if args.compression == "none" else "deflate",
    )
    pool = None
    try:
        if idle:
            idle_result = asyncio.run(_idle_measure(server.ws_url, idle, opts))
            print(f"[{label}] idle: {idle_result}", file=sys.stderr, flush=True)
        if rates:
            pool = ClientPool(opts, args.client_procs)
            opened = pool.open()
            print(f"[{label}] connections: {opened}", file=sys.stderr, flush=True)
            if args.warmup > 0:
                pool.run(
                    server,
                    min(rates),
                    args.warmup,
                    arrivals=args.arrivals,
                    seed=0,
                    timeout_s=args.timeout,
                )
            for i, rate in enumerate(rates, start=1):
                row = pool.run(
                    server,
                    rate,
                    args.seconds,
                    arrivals=args.arrivals,
                    seed=i,
                    timeout_s=args.timeout,
                )
                row = {"config": label, "connections": opened["opened"], **row}
                rows.append(row)
                print(f"[{label}] {_brief(row)}", file=sys.stderr, flush=True)
    finally:
        if pool is not None:
            pool.close()
        server.stop()
    return idle_result, rows, server.log_summary()


def _brief(row: dict[str, Any]) -> str:
    keys = ("offered_per_s", "replies_per_s", "p50_ms", "p99_ms", "timeouts", "errors")
    return " ".join(f"{k}={row[k]}" for k in keys)


COLUMNS = [
    ("config", "config"),
    ("offered/s", "offered_per_s"),
    ("sent", "sent"),
    ("replies/s", "replies_per_s"),
    ("p50 ms", "p50_ms"),
    ("p90 ms", "p90_ms"),
    ("p99 ms", "p99_ms"),
    ("max ms", "max_ms"),
    ("p99 sched ms", "p99_sched_ms"),
    ("deferred", "deferred"),
    ("timeouts", "timeouts"),
    ("errors", "errors"),
    ("unfinished", "unfinished"),
    ("hand-offs", "handoffs"),
    ("server busy after s", "server_busy_after_s"),
    ("mean batch", "mean_batch"),
    ("client CPU s", "client_cpu_s"),
    ("server CPU s (cores)", "server_cpu_s"),
]


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| " + " | ".join(title for title, _ in COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for row in rows:
        cells = []
        for _, key in COLUMNS:
            value = row.get(key)
            if key == "server_cpu_s":
                value = f"{value} ({row['server_cores']})"
            cells.append("–" if value is None else str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", type=Path, help="FRONTDESK_HOME (trained if it has no model)")
    parser.add_argument("--rates", default="100,200,300,400,500,600", help="messages/s, or ''")
    parser.add_argument("--seconds", type=float, default=20.0, help="per rate")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds, not reported")
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--client-procs", type=int, default=1)
    parser.add_argument("--arrivals", choices=["poisson", "uniform"], default="poisson")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per reply")
    parser.add_argument("--turns", type=int, default=10, help="messages per conversation")
    parser.add_argument(
        "--no-stagger",
        dest="stagger",
        action="store_false",
        help="start every first conversation at turn 0 (all restart together)",
    )
    parser.add_argument("--compression", choices=["deflate", "none"], default="deflate")
    parser.add_argument("--idle", type=int, default=100, help="sequential messages; 0: skip")
    parser.add_argument(
        "--compare-batching",
        metavar="RATES",
        help="run these rates (comma-separated) against one server per --batching setting, "
        "same duration each; --rates then applies to none (--idle does, per server)",
    )
    parser.add_argument(
        "--batching",
        default="3/32,0/1",
        help="WAIT_MS/SIZE server settings for --compare-batching, comma-separated; ratios "
        "are each setting's over the first's (default: micro-batching vs none)",
    )
    parser.add_argument(
        "--settings",
        help="instead of --batching: server environments for --compare-batching, separated "
        "by '|', each comma-separated NAME=VALUE (e.g. 'FRONTDESK_ENCODER_INT8=false|"
        "FRONTDESK_ENCODER_INT8=true'); ratios are each one's over the first's",
    )
    parser.add_argument(
        "--repeats", type=int, default=1, help="--compare-batching rounds (alternating order)"
    )
    parser.add_argument("--batch-wait-ms", type=float, help="server setting for --rates")
    parser.add_argument("--batch-size", type=int, help="server setting for --rates")
    parser.add_argument("--database-url", help="store URL (default: fresh SQLite per server)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    home = args.home or Path(tempfile.mkdtemp(prefix="frontdesk-load-"))
    args.home = home
    train_s = ensure_trained(home)
    out: dict[str, Any] = {
        "machine": machine(),
        "home": str(home),
        "train_seconds": train_s,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "matching": "one message outstanding per connection; reply = first bot message (or "
        "hand-off status) frame with seq > the ack's seq",
    }
    rows: list[dict[str, Any]] = []
    logs: list[dict[str, Any]] = []
    if args.compare_batching:
        if args.settings:
            configs = [(label.strip(), settings_env(label)) for label in args.settings.split("|")]
        else:
            settings = [tuple(x.split("/")) for x in args.batching.split(",") if x.strip()]
            configs = [(f"batching {w}ms/{n}", batching_env(float(w), int(n))) for w, n in settings]
        rates = [float(x) for x in args.compare_batching.split(",") if x.strip()]
        rounds = []
        for r in range(args.repeats):
            order = configs if r % 2 == 0 else configs[::-1]
            got_by: dict[str, tuple[dict[str, Any] | None, list[dict[str, Any]]]] = {}
            for label, env in order:
                idle, got, log_summary = run_config(args, label, env, rates, idle=args.idle)
                rows.extend(got)
                logs.append({"config": label, **log_summary})
                got_by[label] = (idle, got)
            base_idle, base_rows = got_by[configs[0][0]]
            ratios = []
            for label, _ in configs[1:]:
                idle, got = got_by[label]
                if idle and base_idle:
                    ratios.append(
                        {"config": label, "vs": configs[0][0], "rate": "idle"}
                        | {
                            f"{k}_ratio": _ratio(idle[k], base_idle[k])
                            for k in ("p50_ms", "p99_ms")
                        }
                    )
                for this, base in zip(got, base_rows, strict=True):
                    ratios.append(
                        {"config": label, "vs": configs[0][0], "rate": this["offered_per_s"]}
                        | {
                            f"{k}_ratio": _ratio(this[k], base[k])
                            for k in ("replies_per_s", "p50_ms", "p99_ms", "server_cpu_s")
                        }
                    )
            rounds.append({"idle": {k: v[0] for k, v in got_by.items()}, "ratios": ratios})
        out["comparison"] = rounds
    else:
        rates = [float(x) for x in args.rates.split(",") if x.strip()]
        label = "default"
        if args.batch_wait_ms is not None or args.batch_size is not None:
            label = f"batch {args.batch_wait_ms}ms/{args.batch_size}"
        idle, got, log_summary = run_config(
            args, label, batching_env(args.batch_wait_ms, args.batch_size), rates, idle=args.idle
        )
        rows.extend(got)
        logs.append({"config": label, **log_summary})
        out["idle"] = idle
    out["rows"] = rows
    out["server_logs"] = logs

    print(
        f"\n{args.connections} connections, {args.client_procs} client process(es), "
        f"{args.arrivals} arrivals, {args.seconds:g} s per rate, store "
        f"{args.database_url or 'fresh SQLite per server'}; {out['matching']}. "
        f"p99 sched: from the scheduled time (includes waiting for an idle connection).\n"
    )
    if out.get("idle"):
        i = out["idle"]
        print(
            f"idle, one connection, {i['answered']} sequential messages: p50 {i['p50_ms']} ms, "
            f"p99 {i['p99_ms']} ms, mean {i['mean_ms']} ms, max {i['max_ms']} ms\n"
        )
    if rows:
        print(markdown(rows))
    for n, round_ in enumerate(out.get("comparison", []), start=1):
        for label, idle in round_["idle"].items():
            if idle:
                print(
                    f"\nround {n}, {label}, idle: p50 {idle['p50_ms']} ms, p99 {idle['p99_ms']} ms"
                )
        for ratio in round_["ratios"]:
            cells = ", ".join(f"{k} {v}" for k, v in ratio.items() if k.endswith("_ratio"))
            print(f"round {n}: {ratio['config']} / {ratio['vs']} at {ratio['rate']}: {cells}")
    for log in logs:
        print(f"\nserver log [{log['config']}]: {log['levels']} {log.get('first_problems') or ''}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


if __name__ == "__main__":
    main()
