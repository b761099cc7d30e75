"""Demo bot: training time, and single-message latency through the widget websocket.

Trains examples/shop into a fresh FRONTDESK_HOME, serves it with `frontdesk serve` in a
separate process, and sends N messages one at a time over /ws/chat from this process,
timing each from send to the bot's answer (the first bot/agent `message` or `status` frame
after the ack). Prints one JSON object.

    python benchmarks/demo_latency.py [--messages 200] [--home DIR] [--skip-train]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import websockets

ROOT = Path(__file__).resolve().parents[1]
MESSAGES = [
    "hi there",
    "how long does delivery take?",
    "where is my order 1042?",
    "can I return a jacket that doesn't fit?",
    "my card payment failed",
    "when are you open on saturday?",
    "do you have a discount code?",
    "I forgot my password",
    "how much is shipping to Austria?",
    "thanks, bye",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


async def wait_ready(url: str, limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            async with websockets.connect(url) as ws:
                await ws.send(json.dumps({"type": "hello"}))
                await ws.recv()
                return
        except OSError:
            await asyncio.sleep(0.5)
    raise TimeoutError(f"server at {url} not ready after {limit_s}s")


async def measure(url: str, n: int) -> list[float]:
    latencies: list[float] = []
    conversation_messages = 8  # a fresh conversation every few turns, like real traffic
    sent = 0
    while sent < n:
        async with websockets.connect(url) as ws:
            await ws.send(json.dumps({"type": "hello"}))
            json.loads(await ws.recv())  # welcome
            for _ in range(min(conversation_messages, n - sent)):
                text = MESSAGES[sent % len(MESSAGES)]
                start = time.perf_counter()
                await ws.send(
                    json.dumps({"type": "message", "client_id": f"m{sent}", "text": text})
                )
                while True:
                    frame = json.loads(await ws.recv())
                    if frame["type"] in {"message", "status"} and frame.get("role") != "customer":
                        break
                latencies.append((time.perf_counter() - start) * 1000)
                # drain the rest of this answer (extra messages, status) before the next one
                try:
                    while True:
                        await asyncio.wait_for(ws.recv(), 0.05)
                except TimeoutError:
                    pass
                sent += 1
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--home", type=Path)
    parser.add_argument("--skip-train", action="store_true")
    args = parser.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="frontdesk-bench-"))
    env = {**os.environ, "FRONTDESK_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    cli = [sys.executable, "-m", "channels.cli"]
    result: dict[str, object] = {"home": str(home), "cpu_count": os.cpu_count()}
    if not args.skip_train:
        start = time.perf_counter()
        subprocess.run(
            [*cli, "train", "--bot", str(ROOT / "examples/shop"), "--json"],
            env=env,
            check=True,
            cwd=ROOT,
            stdout=subprocess.PIPE,
        )
        result["train_seconds"] = round(time.perf_counter() - start, 1)
    port = free_port()
    server = subprocess.Popen(
        [*cli, "serve", "--bot", str(ROOT / "examples/shop"), "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"ws://127.0.0.1:{port}/ws/chat"
        asyncio.run(wait_ready(url, 120))
        asyncio.run(measure(url, 20))  # warm-up
        latencies = asyncio.run(measure(url, args.messages))
    finally:
        server.terminate()
        server.wait(10)
    result.update(
        messages=len(latencies),
        p50_ms=round(statistics.median(latencies), 2),
        p99_ms=round(percentile(latencies, 99), 2),
        mean_ms=round(statistics.fmean(latencies), 2),
        max_ms=round(max(latencies), 2),
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
