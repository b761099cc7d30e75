"""Fault injection: does every accepted customer message get an answer, exactly once?

Scenarios (each repeated ``--repeats`` times, `frontdesk serve` subprocesses of the shop bot):

- ``kill9``: 20 widget customers send messages (``--gap`` apart each: 0.1 s offers 200 a
  second, more than two cores answer, so a backlog builds) to one server on SQLite; the
  server is killed with SIGKILL at a random moment under load, then started again on the
  same store.
- ``burst``: 50 customers send 20 messages each at once to one server (SQLite).

Counted from the store after each run (and, for kill9, 10 s after the restart is ready):
acked messages missing from the store, acked messages with neither an answer nor a
hand-over, messages answered twice, and apologies (the service's ``error`` answers).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/faults.py [--home H] [--scenarios kill9,burst]
        [--repeats 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import websockets

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._server import Server, ensure_trained, machine  # noqa: E402
from bot.types import Role  # noqa: E402
from channels.store import Store  # noqa: E402

QUESTIONS = [
    "how long does delivery take?", "how much is shipping?", "can I return a jacket?",
    "where is my refund?", "my card was declined", "I forgot my password",
    "are you open on Sundays?", "how can I contact you?", "do you have a discount code?",
    "is the blue jumper in stock?", "do you offer gift wrapping?", "my parcel arrived broken",
]  # fmt: skip
ANSWERS = {"reply", "clarify", "action", "error"}
"""Bot decisions that answer a message (a hand-over answers with ``escalate``)."""


async def customer(
    url: str, n: int, messages: int, gap_s: float, acked: dict[str, tuple[str, int]]
) -> None:
    """One widget customer: hello, then ``messages`` messages ``gap_s`` apart; records each
    ack as client_id -> (conversation, seq). Stops quietly when the server goes away."""
    try:
        async with websockets.connect(url, open_timeout=10) as ws:
            await ws.send(json.dumps({"type": "hello"}))
            welcome = json.loads(await ws.recv())
            conversation = welcome["conversation_id"]

            async def read() -> None:
                try:
                    async for raw in ws:
                        frame = json.loads(raw)
                        if frame["type"] == "ack":
                            acked[frame["client_id"]] = (conversation, frame["seq"])
                except websockets.ConnectionClosed:
                    return  # the server went away (killed): what was acked is recorded

            reader = asyncio.create_task(read())
            for i in range(messages):
                text = QUESTIONS[(n + i) % len(QUESTIONS)]
                await ws.send(
                    json.dumps({"type": "message", "client_id": f"{n}-{i}", "text": text})
                )
                await asyncio.sleep(gap_s)
            await asyncio.sleep(2.0)
            reader.cancel()
    except (OSError, websockets.ConnectionClosed, TimeoutError):
        return


async def audit(database_url: str, acked: dict[str, tuple[str, int]]) -> dict[str, int]:
    """Count, for the acked messages, what the store shows."""
    store = await Store.open(database_url)
    try:
        by_conversation: dict[str, list[int]] = {}
        for conversation, seq in acked.values():
            by_conversation.setdefault(conversation, []).append(seq)
        missing = unanswered = twice = apologies = 0
        for conversation, seqs in by_conversation.items():
            events = await store.events_after(conversation, 0, 100_000)
            stored = {e.seq for e in events if e.role is Role.CUSTOMER}
            answers: dict[int, Counter[str]] = {}
            handed_over_at: int | None = None
            for e in events:
                reply_to = e.payload.get("in_reply_to") if e.role is Role.BOT else None
                decision = e.payload.get("decision")
                if isinstance(reply_to, int) and decision in ANSWERS | {"escalate"}:
                    answers.setdefault(reply_to, Counter())[str(decision)] += 1
                    apologies += decision == "error"
                if e.kind == "status" and handed_over_at is None:
                    handed_over_at = e.seq  # later messages are a person's to answer
            for seq in seqs:
                got = answers.get(seq, Counter())
                # an action may answer with several messages: one answer
                count = sum(n for d, n in got.items() if d != "action") + bool(got["action"])
                if seq not in stored:
                    missing += 1
                elif count == 0 and (handed_over_at is None or seq < handed_over_at):
                    unanswered += 1
                elif count > 1:
                    twice += 1
        return {
            "acked": len(acked),
            "missing": missing,
            "unanswered": unanswered,
            "answered_twice": twice,
            "apologies": apologies,
        }
    finally:
        await store.close()


async def kill9(home: Path, work: Path, rng: random.Random, gap_s: float) -> dict[str, Any]:
    database_url = f"sqlite+aiosqlite:///{(work / f'kill9-{time.time_ns()}.db').resolve()}"
    acked: dict[str, tuple[str, int]] = {}
    first = Server(home, label="kill9", database_url=database_url).start()
    clients = [asyncio.create_task(customer(first.ws_url, n, 15, 1.0, acked)) for n in range(20)]
    await asyncio.sleep(rng.uniform(2.0, 5.0))
    first.proc.kill()  # type: ignore[union-attr]
    first.proc.wait(10)  # type: ignore[union-attr]
    await asyncio.gather(*clients, return_exceptions=True)
    left = (await audit(database_url, acked))["unanswered"]  # what the kill left
    second = Server(home, label="kill9-restart", database_url=database_url).start()
    try:
        await asyncio.sleep(10.0)  # the bound: answered within 10 s of recovery
        counts = {**await audit(database_url, acked), "unanswered_at_the_kill": left}
    finally:
        second.stop()
        first.stop()
    return counts


async def burst(home: Path, work: Path, rng: random.Random, gap_s: float) -> dict[str, Any]:
    database_url = f"sqlite+aiosqlite:///{(work / f'burst-{time.time_ns()}.db').resolve()}"
    acked: dict[str, tuple[str, int]] = {}
    with Server(home, label="burst", database_url=database_url) as server:
        started = time.monotonic()
        await asyncio.gather(*(customer(server.ws_url, n, 20, 0.0, acked) for n in range(50)))
        await asyncio.sleep(15.0)
        counts = await audit(database_url, acked)
        counts["seconds"] = round(time.monotonic() - started, 1)
    return counts


SCENARIOS = {"kill9": kill9, "burst": burst}


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


async def main_async(opts: argparse.Namespace) -> dict[str, Any]:
    home = opts.home or Path(tempfile.mkdtemp(prefix="faults-"))
    ensure_trained(home)
    work = home / "faults"
    work.mkdir(parents=True, exist_ok=True)
    rng = random.Random(opts.seed)
    results: dict[str, Any] = {
        "machine": machine(),
        "cpu": cpu_model(),
        "repeats": opts.repeats,
        "gap_s": opts.gap,
    }
    for name in opts.scenarios.split(","):
        runs = []
        for _ in range(opts.repeats):
            runs.append(await SCENARIOS[name](home, work, rng, opts.gap))
            print(json.dumps({name: runs[-1]}), file=sys.stderr, flush=True)
        results[name] = runs
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, help="a trained FRONTDESK_HOME (default: train)")
    parser.add_argument("--scenarios", default="kill9,burst")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--gap", type=float, default=0.1, help="kill9: seconds between messages")
    opts = parser.parse_args()
    print(json.dumps(asyncio.run(main_async(opts))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
