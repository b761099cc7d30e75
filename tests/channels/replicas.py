"""Server replicas for tests: ``frontdesk serve`` processes sharing one PostgreSQL database
and one Redis, as in production behind a load balancer (docs/scale-out.md).

The ``replicas`` fixture in tests/conftest.py starts two for the session; use
:func:`running_replicas` directly for other counts or settings.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.channels.server import free_port

ROOT = Path(__file__).resolve().parents[2]
SERVE = (sys.executable, "-m", "channels.cli", "serve")

# Limits for the public internet that tests from one address would trip.
TEST_ENV = {
    "FRONTDESK_IP_CONNECT_RATE": "100000/minute",
    "FRONTDESK_IP_REQUEST_RATE": "100000/minute",
    "FRONTDESK_LOG_FORMAT": "text",
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


@dataclass
class Replica:
    address: str
    """``127.0.0.1:PORT``"""
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])


def _ready(address: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{address}/readyz", timeout=2) as resp:
            return bool(resp.status == 200)
    except (OSError, urllib.error.URLError):
        return False


@contextlib.contextmanager
def running_replicas(
    home: Path,
    *,
    database_url: str,
    redis_url: str,
    log_dir: Path,
    count: int = 2,
    bot: Path = ROOT / "examples" / "shop",
    env: Mapping[str, str] | None = None,
    ready_timeout_s: float = 180.0,
) -> Iterator[list[Replica]]:
    """Start ``count`` servers for ``bot`` (trained into ``home``) and wait until each
    answers ``/readyz``; they are terminated when the block ends."""
    log_dir.mkdir(parents=True, exist_ok=True)
    full_env = {
        **os.environ,
        **TEST_ENV,
        "FRONTDESK_HOME": str(home),
        "FRONTDESK_DATABASE_URL": database_url,
        "FRONTDESK_REDIS_URL": redis_url,
        **(env or {}),
    }
    replicas: list[Replica] = []
    try:
        for i in range(count):
            port = free_port()
            log_path = log_dir / f"replica-{i}-{port}.log"
            with open(log_path, "wb") as log:
                process = subprocess.Popen(
                    [*SERVE, "--bot", str(bot), "--port", str(port)],
                    env=full_env,
                    cwd=ROOT,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            replicas.append(Replica(f"127.0.0.1:{port}", process, log_path))
        deadline = time.monotonic() + ready_timeout_s
        for replica in replicas:
            while not _ready(replica.address):
                if replica.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"replica {replica.address} did not start "
                        f"(exit {replica.process.returncode}); log {replica.log_path}:\n"
                        f"{replica.log_tail()}"
                    )
                time.sleep(0.2)
        yield replicas
    finally:
        for replica in replicas:
            if replica.process.poll() is None:
                replica.process.terminate()
        for replica in replicas:
            try:
                replica.process.wait(30)
            except subprocess.TimeoutExpired:
                replica.process.kill()
                replica.process.wait(10)


@contextlib.contextmanager
def one_server(
    home: Path,
    *,
    log_path: Path,
    port: int | None = None,
    bot: Path = ROOT / "examples" / "shop",
    env: Mapping[str, str] | None = None,
    ready_timeout_s: float = 180.0,
) -> Iterator[Replica]:
    """One ``frontdesk serve`` process on its home's SQLite store (no Redis): for crash
    tests, which kill it (``replica.process.kill()``) and start another on the same home."""
    port = port or free_port()
    full_env = {**os.environ, **TEST_ENV, "FRONTDESK_HOME": str(home), **(env or {})}
    full_env.pop("FRONTDESK_DATABASE_URL", None)
    full_env.pop("FRONTDESK_REDIS_URL", None)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [*SERVE, "--bot", str(bot), "--port", str(port)],
            env=full_env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    replica = Replica(f"127.0.0.1:{port}", process, log_path)
    try:
        deadline = time.monotonic() + ready_timeout_s
        while not _ready(replica.address):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"server {replica.address} did not start (exit {process.returncode}); "
                    f"log {log_path}:\n{replica.log_tail()}"
                )
            time.sleep(0.2)
        yield replica
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
