"""Store write throughput: messages persisted per second by ``channels.store.Store``.

C concurrent conversations each loop for a fixed duration doing what the service does per
customer message: ``append_customer_message`` (a fresh ``client_id``) then
``append_event`` for the bot's reply. One ``Store`` (one engine, default pool) is shared
by all of them, as in one server process. Backends: SQLite (a fresh file, default
settings: WAL, the store's in-process write lock) and PostgreSQL (a fresh database,
created and dropped here).

    python benchmarks/store_throughput.py [--concurrency 1,10,100] [--duration 5]
        [--backends sqlite,postgres] [--postgres URL] [--dir DIR] [--json FILE]

``messages/s`` counts both appends (customer message + bot reply); ``turns/s`` is half that.
Latencies are per append call.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _server import machine, percentile, rnd
from sqlalchemy.engine import make_url

from bot.types import Role
from channels.store import Store

DEFAULT_PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
REPLY_PAYLOAD = {"intent": "order_status", "confidence": 0.93, "model": "v0001"}


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _remove_sqlite(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(str(path) + suffix).unlink(missing_ok=True)


@contextlib.asynccontextmanager
async def fresh_database(backend: str, postgres: str, folder: Path) -> AsyncIterator[str]:
    if backend == "sqlite":
        path = folder / f"store-bench-{uuid.uuid4().hex[:8]}.db"
        try:
            yield f"sqlite+aiosqlite:///{path.resolve()}"
        finally:
            _remove_sqlite(path)
        return
    import asyncpg

    name = f"fd_bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(_asyncpg_dsn(postgres))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield make_url(postgres).set(database=name).render_as_string(hide_password=False)
    finally:
        admin = await asyncpg.connect(_asyncpg_dsn(postgres))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def run_one(url: str, concurrency: int, duration_s: float) -> dict[str, Any]:
    store = await Store.open(url)
    try:
        now = datetime.now(UTC)
        ids = [(await store.create_conversation("web", now))[0].id for _ in range(concurrency)]
        customer_ms: list[float] = []
        reply_ms: list[float] = []
        errors: list[str] = []
        start = time.perf_counter()
        stop_at = start + duration_s

        async def conversation(cid: str) -> None:
            n = 0
            while time.perf_counter() < stop_at:
                n += 1
                t0 = time.perf_counter()
                try:
                    event, created = await store.append_customer_message(
                        cid, f"c{n}", f"customer message {n}", datetime.now(UTC)
                    )
                    t1 = time.perf_counter()
                    await store.append_event(
                        cid,
                        kind="message",
                        role=Role.BOT,
                        text=f"bot reply {n}",
                        payload={**REPLY_PAYLOAD, "in_reply_to": event.seq},
                        now=datetime.now(UTC),
                    )
                    t2 = time.perf_counter()
                except Exception as exc:  # count and go on: report, do not hide
                    errors.append(repr(exc)[:200])
                    continue
                assert created
                customer_ms.append((t1 - t0) * 1000)
                reply_ms.append((t2 - t1) * 1000)

        await asyncio.gather(*(conversation(cid) for cid in ids))
        elapsed = time.perf_counter() - start
    finally:
        await store.close()
    both = customer_ms + reply_ms
    return {
        "concurrency": concurrency,
        "elapsed_s": round(elapsed, 2),
        "messages": len(both),
        "messages_per_s": rnd(len(both) / elapsed, 1),
        "turns_per_s": rnd(len(customer_ms) / elapsed, 1),
        "append_p50_ms": rnd(percentile(both, 50), 2),
        "append_p99_ms": rnd(percentile(both, 99), 2),
        "customer_append_p50_ms": rnd(percentile(customer_ms, 50), 2),
        "customer_append_p99_ms": rnd(percentile(customer_ms, 99), 2),
        "reply_append_p50_ms": rnd(percentile(reply_ms, 50), 2),
        "reply_append_p99_ms": rnd(percentile(reply_ms, 99), 2),
        "errors": len(errors),
        "first_errors": errors[:3],
    }


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| backend | C | messages/s | turns/s | append p50 | append p99 "
        "| customer p50 / p99 | reply p50 / p99 | errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['backend']} | {r['concurrency']} | {r['messages_per_s']} | {r['turns_per_s']} "
            f"| {r['append_p50_ms']} ms | {r['append_p99_ms']} ms "
            f"| {r['customer_append_p50_ms']} / {r['customer_append_p99_ms']} ms "
            f"| {r['reply_append_p50_ms']} / {r['reply_append_p99_ms']} ms | {r['errors']} |"
        )
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    results = []
    for backend in args.backends.split(","):
        if backend not in {"sqlite", "postgres"}:
            raise SystemExit(f"unknown backend {backend!r}")
        for concurrency in (int(c) for c in args.concurrency.split(",")):
            # a fresh database per run: no run starts with another's rows
            async with fresh_database(backend, args.postgres, args.dir) as url:
                result = await run_one(url, concurrency, args.duration)
            result = {"backend": backend, **result}
            print(
                f"{backend} C={concurrency}: {result['messages_per_s']} messages/s",
                file=sys.stderr,
                flush=True,
            )
            results.append(result)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", default="1,10,100", help="comma-separated C values")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--postgres", default=DEFAULT_PG, help="admin URL (creates a db)")
    parser.add_argument(
        "--dir", type=Path, default=Path(tempfile.gettempdir()), help="SQLite files' folder"
    )
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    results = asyncio.run(main_async(args))
    print(table(results))
    if args.json:
        report = {
            "benchmark": "store_throughput",
            "duration_s": args.duration,
            "machine": machine(),
            "results": results,
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
