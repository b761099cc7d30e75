"""Fuzz every entry point of a running `frontdesk serve` and count what should never
happen: a 5xx, a widget socket that goes silent (neither answers nor closes), a handler
left behind (`frontdesk_connections` above 0 once every client has gone), RSS that does
not come back.

Inputs (``--inputs`` in all, drawn with ``--seed``): widget frames (valid ones with hostile
values, invalid JSON, wrong types, huge numbers, lone surrogates, NUL, deep nesting), REST
webhook bodies, console logins, console API paths and bodies without a session, and
Telegram webhooks signed with the server's secret token carrying hostile updates.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/fuzz.py [--home H] [--inputs 10000]
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
from urllib.parse import quote

import httpx
import websockets

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._server import Server, ensure_trained  # noqa: E402
from benchmarks.faults import cpu_model  # noqa: E402

SECRET = "fuzz-secret-token"
NASTY: list[Any] = [
    "", " ", "\x00", "a\x00b", "\ud800", "\udfff x", "\u202e", "😀" * 50, "x" * 5000,
    -1, 0, 2**31, 2**63, 10**250, 1e400, -1e400, float("nan"), True, None, [], {}, [[[]]],
    "Infinity", "NaN", "'; DROP TABLE events; --", "<script>alert(1)</script>",
]  # fmt: skip
KEYS = ["type", "client_id", "text", "conversation_id", "token", "last_seq", "stars", "x"]
TYPES = ["hello", "message", "typing", "rate", "watch", "nonsense", None, 5]


def value(rng: random.Random) -> Any:
    return rng.choice(NASTY)


def hostile_json(rng: random.Random) -> str:
    """A JSON-ish text: a frame with hostile values, broken syntax or deep nesting."""
    kind = rng.random()
    if kind < 0.5:
        frame = {k: value(rng) for k in rng.sample(KEYS, rng.randint(1, 4))}
        frame["type"] = rng.choice(TYPES)
        try:
            return json.dumps(frame)  # NaN and Infinity go out as bare tokens
        except ValueError:
            return "{}"
    if kind < 0.7:
        return "[" * rng.randint(100, 3000) + "]" * rng.randint(0, 3000)
    if kind < 0.85:
        return rng.choice(['{"type": "message"', "null", "1", '"x"', "{}", "[]", "\ud800", "\x00"])
    return json.dumps({"type": "message", "client_id": str(value(rng)), "text": str(value(rng))})


def as_text(raw: str) -> bytes:
    return raw.encode("utf-8", "surrogatepass")


async def widget(url: str, rng: random.Random, count: int, tally: Counter[str]) -> None:
    """One socket: a hello, then ``count`` hostile frames, each followed by a check that
    the socket still answers (a valid typing frame gets nothing, so a `rate` frame before
    hello is used: it always gets an error frame or a close)."""
    try:
        async with websockets.connect(url, open_timeout=10, max_size=2**22) as ws:
            if rng.random() < 0.8:
                await ws.send(json.dumps({"type": "hello"}))
                await ws.recv()
            for _ in range(count):
                raw = hostile_json(rng)
                if rng.random() < 0.2:
                    await ws.send(as_text(raw))  # a binary frame, maybe not UTF-8
                else:
                    await ws.send(raw.encode("utf-8", "replace").decode("utf-8"))
                tally["widget_frames"] += 1
            await ws.send('{"type": "bogus"}')  # always answered with an error frame
            try:
                async with asyncio.timeout(5):
                    while True:
                        frame = json.loads(await ws.recv())
                        if frame.get("type") == "error":
                            break
            except TimeoutError:
                tally["silent_sockets"] += 1
    except websockets.ConnectionClosed:
        tally["widget_closed_by_server"] += 1  # a documented close code (limits)
    except (OSError, TimeoutError):
        tally["widget_connect_failed"] += 1


async def http_inputs(base: str, rng: random.Random, count: int, tally: Counter[str]) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        for _ in range(count):
            pick = rng.random()
            body = as_text(hostile_json(rng))
            headers = {"content-type": "application/json"}
            if pick < 0.3:
                response = await http.post("/webhooks/rest/webhook", content=body, headers=headers)
            elif pick < 0.45:
                response = await http.post("/console/login", content=body, headers=headers)
            elif pick < 0.6:
                ident = quote(str(value(rng))[:300].encode("utf-8", "surrogatepass"), safe="")
                response = await http.get(f"/console/api/conversations/{ident}")
            elif pick < 0.7:
                response = await http.post("/socket.io/?EIO=4&transport=polling", content=body)
            else:
                update = {
                    "update_id": rng.randint(0, 10**6),
                    "message": {
                        "message_id": value(rng),
                        "chat": {"id": value(rng), "type": "private"},
                        "from": {"id": value(rng), "is_bot": False, "first_name": "F"},
                        "date": 0,
                        "text": value(rng),
                    },
                }
                try:
                    content = json.dumps(update).encode("utf-8", "surrogatepass")
                except ValueError:
                    content = b"{}"
                response = await http.post(
                    "/webhooks/telegram",
                    content=content,
                    headers={**headers, "X-Telegram-Bot-Api-Secret-Token": SECRET},
                )
            tally[f"http_{response.status_code // 100}xx"] += 1
            if response.status_code >= 500:
                print(f"5xx: {response.request.method} {response.request.url}", file=sys.stderr)


async def run(opts: argparse.Namespace) -> dict[str, Any]:
    home = opts.home or Path(tempfile.mkdtemp(prefix="fuzz-"))
    ensure_trained(home)
    env = {
        "FRONTDESK_TELEGRAM_BOT_TOKEN": "123:fuzz",
        "FRONTDESK_TELEGRAM_SECRET_TOKEN": SECRET,
        "FRONTDESK_TELEGRAM_API_URL": "http://127.0.0.1:9",  # nothing answers: sends fail
        "FRONTDESK_RECOVER_ON_START": "false",
    }
    rng = random.Random(opts.seed)
    tally: Counter[str] = Counter()
    rss_mb: list[float] = []
    with Server(home, label="fuzz", env=env) as server:
        rss_mb.append(round(server.rss_bytes() / 2**20, 1))
        started = time.monotonic()
        sockets = opts.inputs // 2 // 50
        for _ in range(opts.rounds):  # a later round shows whether memory keeps growing
            await asyncio.gather(
                *(
                    widget(server.ws_url, random.Random(rng.random()), 50, tally)
                    for _ in range(sockets)
                ),
                http_inputs(server.url, random.Random(rng.random()), opts.inputs // 2, tally),
            )
            await asyncio.sleep(3.0)
            rss_mb.append(round(server.rss_bytes() / 2**20, 1))
        seconds = time.monotonic() - started
        connections = server.metrics().get("frontdesk_connections", -1)
        log = server.log_summary()
    return {
        "cpu": cpu_model(),
        "inputs": opts.inputs * opts.rounds,
        "seconds": round(seconds, 1),
        "tally": dict(tally),
        "connections_left": connections,
        "rss_mb_at_start_and_after_each_round": rss_mb,
        "log": log,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path)
    parser.add_argument("--inputs", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--rounds", type=int, default=1, help="times the inputs are sent")
    opts = parser.parse_args()
    print(json.dumps(asyncio.run(run(opts))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
