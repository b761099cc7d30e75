"""Idle widget connections: what N open `/ws/chat` conversations cost one server process.

Serves `examples/shop` with `frontdesk serve` in a subprocess (open-file limit raised to its
hard limit), then opens N websocket connections from separate client processes
(`--client-procs`), at most `--concurrency` at a time; each sends `hello` and waits for its
`welcome`. Every `hello` creates a conversation in the store (N inserts, one fsync'd SQLite
commit each by default), so the opening time includes N store writes.

Reported: the server's RSS (VmRSS) before and after, bytes per connection, the server's open
files and CPU, the time to open them all and each connection's connect-to-welcome time. After
`--hold` seconds (the server pings every connection every 20 s), every connection is pinged,
and `--check` of them, spread over all, send one message each and must get the bot's answer.

    python benchmarks/idle_connections.py --home /tmp/fd-home --connections 10000

Clients behave like browsers: they send no pings of their own, and offer permessage-deflate
(`--compression none` to measure without it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import resource
import sys
import tempfile
import time
from collections import Counter
from multiprocessing.connection import Connection as Pipe
from pathlib import Path
from typing import Any

import websockets
from _server import Server, ensure_trained, machine, percentile, raise_nofile, rnd
from websockets.exceptions import ConnectionClosed, InvalidStatus

HELLO = json.dumps({"type": "hello"})
CHECK_TEXT = "how long does delivery to Austria take?"


async def answer_of(ws: Any, client_id: str, text: str, timeout_s: float) -> float:
    """Send one message; seconds until the bot's answer (a bot message or status frame)."""
    start = time.monotonic()
    await ws.send(json.dumps({"type": "message", "client_id": client_id, "text": text}))
    deadline = start + timeout_s
    acked: int | None = None
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), deadline - time.monotonic()))
        kind = frame.get("type")
        if kind == "ack" and frame.get("client_id") == client_id:
            acked = int(frame["seq"])
        elif (
            kind in {"message", "status"}
            and frame.get("role") != "customer"
            and acked is not None
            and int(frame.get("seq", -1)) > acked
        ):
            return time.monotonic() - start
        elif kind == "error":
            raise RuntimeError(f"error frame: {frame}")


class Worker:
    def __init__(self, url: str, count: int, concurrency: int, compression: str | None) -> None:
        self.url = url
        self.count = count
        self.concurrency = concurrency
        self.compression = compression
        self.conns: list[Any] = []

    async def open_all(self) -> dict[str, Any]:
        gate = asyncio.Semaphore(self.concurrency)
        failures: Counter[str] = Counter()
        first_failure: list[str] = []
        times: list[float] = []

        async def one() -> None:
            async with gate:
                start = time.monotonic()
                try:
                    ws = await websockets.connect(
                        self.url,
                        open_timeout=60,
                        ping_interval=None,
                        compression=self.compression,
                        max_queue=64,
                    )
                    await ws.send(HELLO)
                    frame = json.loads(await asyncio.wait_for(ws.recv(), 60))
                    if frame.get("type") != "welcome":
                        raise RuntimeError(f"expected welcome, got {frame}")
                except (OSError, TimeoutError, ConnectionClosed, InvalidStatus, RuntimeError) as e:
                    key = type(e).__name__
                    if isinstance(e, ConnectionClosed) and e.rcvd is not None:
                        key += f" {e.rcvd.code}"
                    failures[key] += 1
                    if not first_failure:
                        first_failure.append(f"{key}: {e}")
                    return
                times.append(time.monotonic() - start)
                self.conns.append(ws)

        start = time.monotonic()
        await asyncio.gather(*(one() for _ in range(self.count)))
        return {
            "opened": len(times),
            "failures": dict(failures),
            "first_failure": first_failure[0] if first_failure else None,
            "seconds": time.monotonic() - start,
            "open_ms": [t * 1000 for t in times],
        }

    async def check(self, messages: int, timeout_s: float) -> dict[str, Any]:
        """Ping every connection; send one message on ``messages`` of them."""
        gate = asyncio.Semaphore(500)
        alive = 0
        closed_codes: Counter[str] = Counter()

        async def ping(ws: Any) -> None:
            nonlocal alive
            async with gate:
                try:
                    waiter = await ws.ping()
                    await asyncio.wait_for(waiter, timeout_s)
                    alive += 1
                except (ConnectionClosed, TimeoutError):
                    closed_codes[str(ws.close_code)] += 1

        await asyncio.gather(*(ping(ws) for ws in self.conns))
        picked = self.conns[:: max(1, len(self.conns) // messages)][:messages] if messages else []
        latencies: list[float] = []
        failed: Counter[str] = Counter()

        async def ask(i: int, ws: Any) -> None:
            try:
                latencies.append(await answer_of(ws, f"check-{i}", CHECK_TEXT, timeout_s) * 1000)
            except (ConnectionClosed, TimeoutError, RuntimeError) as e:
                failed[type(e).__name__] += 1

        await asyncio.gather(*(ask(i, ws) for i, ws in enumerate(picked)))
        return {
            "alive": alive,
            "dead": dict(closed_codes),
            "asked": len(picked),
            "answered": len(latencies),
            "answer_ms": latencies,
            "failed": dict(failed),
        }

    async def close_all(self) -> None:
        gate = asyncio.Semaphore(500)

        async def one(ws: Any) -> None:
            async with gate:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.close(), 10)

        await asyncio.gather(*(one(ws) for ws in self.conns))


def worker_main(
    pipe: Pipe, url: str, count: int, concurrency: int, compression: str | None
) -> None:
    raise_nofile()
    asyncio.run(_worker_loop(pipe, Worker(url, count, concurrency, compression)))


async def _worker_loop(pipe: Pipe, worker: Worker) -> None:
    loop = asyncio.get_running_loop()
    while True:
        command, arg = await loop.run_in_executor(None, pipe.recv)
        if command == "open":
            pipe.send(await worker.open_all())
        elif command == "check":
            pipe.send(await worker.check(*arg))
        elif command == "close":
            await worker.close_all()
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            pipe.send({"client_max_rss": rss})
            return


def call(pipes: list[Pipe], commands: list[tuple[str, Any]], timeout_s: float) -> list[Any]:
    for pipe, command in zip(pipes, commands, strict=True):
        pipe.send(command)
    out = []
    deadline = time.monotonic() + timeout_s
    for pipe in pipes:
        if not pipe.poll(max(0.0, deadline - time.monotonic())):
            raise TimeoutError(f"client worker did not answer {commands[0][0]!r}")
        out.append(pipe.recv())
    return out


def warm_up(url: str) -> None:
    async def go() -> None:
        async with websockets.connect(url, ping_interval=None) as ws:
            await ws.send(HELLO)
            await ws.recv()
            for i in range(3):
                await answer_of(ws, f"warm-{i}", CHECK_TEXT, 60)

    asyncio.run(go())


def mib(n: float) -> float:
    return round(n / 2**20, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", type=Path, help="FRONTDESK_HOME (trained if it has no model)")
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=200, help="opening at once, in all")
    parser.add_argument("--client-procs", type=int, default=2)
    parser.add_argument("--hold", type=float, default=30.0, help="seconds idle before checking")
    parser.add_argument("--check", type=int, default=20, help="connections that send a message")
    parser.add_argument("--timeout", type=float, default=30.0, help="per ping / answer")
    parser.add_argument("--compression", choices=["deflate", "none"], default="deflate")
    parser.add_argument("--database-url", help="store URL (default: fresh SQLite)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    procs = max(1, args.client_procs)
    per_proc = -(-args.connections // procs)
    soft = raise_nofile()
    if per_proc + 100 > soft:
        sys.exit(
            f"{per_proc} connections per client process need more than the open-file limit "
            f"{soft}; use more --client-procs"
        )
    home = args.home or Path(tempfile.mkdtemp(prefix="frontdesk-idle-"))
    train_s = ensure_trained(home)
    compression = None if args.compression == "none" else "deflate"
    server = Server(home, label="idle", database_url=args.database_url, raise_nofile=True)
    server.start()
    result: dict[str, Any] = {
        "machine": machine(),
        "home": str(home),
        "train_seconds": train_s,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }
    ctx = mp.get_context("spawn")
    pipes: list[Pipe] = []
    workers = []
    try:
        limit = server.nofile_limit()
        result["server_nofile_limit"] = limit
        if limit is not None and limit < args.connections + 100:
            print(f"warning: server open-file limit {limit}", file=sys.stderr)
        warm_up(server.ws_url)
        time.sleep(1.0)
        rss0, fds0, cpu0 = server.rss_bytes(), server.open_fds(), server.cpu_seconds()
        shares = [args.connections // procs + (i < args.connections % procs) for i in range(procs)]
        for share in shares:
            mine, theirs = ctx.Pipe()
            conc = max(1, args.concurrency // procs)
            proc = ctx.Process(
                target=worker_main,
                args=(theirs, server.ws_url, share, conc, compression),
                daemon=True,
            )
            proc.start()
            pipes.append(mine)
            workers.append(proc)
        time.sleep(2.0)  # let the workers import before the clock starts
        start = time.monotonic()
        opened = call(pipes, [("open", None)] * procs, 3600)
        open_s = time.monotonic() - start
        cpu1 = server.cpu_seconds()
        time.sleep(2.0)
        rss1, fds1 = server.rss_bytes(), server.open_fds()
        gauge = server.metrics().get("frontdesk_connections")
        n_open = sum(r["opened"] for r in opened)
        open_ms = [x for r in opened for x in r["open_ms"]]
        failures: Counter[str] = Counter()
        for r in opened:
            failures.update(r["failures"])
        print(
            f"opened {n_open}/{args.connections} in {open_s:.1f} s; RSS {mib(rss0)} -> "
            f"{mib(rss1)} MiB; holding {args.hold:g} s",
            file=sys.stderr,
            flush=True,
        )
        time.sleep(args.hold)
        rss_held = server.rss_bytes()
        per_worker = [args.check // procs + (i < args.check % procs) for i in range(procs)]
        checks = call(pipes, [("check", (k, args.timeout)) for k in per_worker], 600 + args.timeout)
        rss_after_check = server.rss_bytes()
        answers = [x for c in checks for x in c["answer_ms"]]
        dead: Counter[str] = Counter()
        failed: Counter[str] = Counter()
        for c in checks:
            dead.update(c["dead"])
            failed.update(c["failed"])
        closed = call(pipes, [("close", None)] * procs, 600)
        result.update(
            connections=args.connections,
            opened=n_open,
            open_failures=dict(failures),
            first_failure=next((r["first_failure"] for r in opened if r["first_failure"]), None),
            open_seconds=round(open_s, 2),
            opened_per_s=round(n_open / open_s, 1) if open_s else None,
            open_ms_p50=rnd(percentile(open_ms, 50)),
            open_ms_p99=rnd(percentile(open_ms, 99)),
            open_ms_max=rnd(max(open_ms) if open_ms else None),
            server_cpu_s_opening=round(cpu1 - cpu0, 2),
            server_rss_before_mib=mib(rss0),
            server_rss_after_mib=mib(rss1),
            server_rss_after_hold_mib=mib(rss_held),
            server_rss_after_check_mib=mib(rss_after_check),
            bytes_per_connection=round((rss1 - rss0) / n_open) if n_open else None,
            bytes_per_connection_after_hold=round((rss_held - rss0) / n_open) if n_open else None,
            server_open_files_before=fds0,
            server_open_files_after=fds1,
            server_connections_gauge=gauge,
            server_threads=server.threads(),
            alive_after_hold=sum(c["alive"] for c in checks),
            dead_after_hold=dict(dead),
            checked=sum(c["asked"] for c in checks),
            check_answered=len(answers),
            check_failed=dict(failed),
            check_answer_ms_p50=rnd(percentile(answers, 50)),
            check_answer_ms_max=rnd(max(answers) if answers else None),
            client_max_rss_mib=[mib(c["client_max_rss"]) for c in closed],
            compression=args.compression,
            store=args.database_url or "fresh SQLite (one conversation insert per hello)",
        )
    finally:
        for proc in workers:
            proc.join(10)
            if proc.is_alive():
                proc.terminate()
        server.stop()
    result["server_log"] = server.log_summary()

    print(
        "\n| what | figure |\n|---|---|\n"
        + "\n".join(
            f"| {k} | {v} |"
            for k, v in result.items()
            if k not in {"args", "machine", "home", "server_log"}
        )
    )
    print(f"\nserver log: {result['server_log']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
