"""Shared helpers of the websocket benchmarks: a trained FRONTDESK_HOME, a `frontdesk serve`
subprocess (its CPU time, RSS, /metrics and log), and small statistics.

Not a benchmark itself; imported by ``load_ws.py`` and ``idle_connections.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
BOT = ROOT / "examples" / "shop"
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Limits meant for the public internet that a load generator on one address would trip.
BENCH_ENV = {
    "FRONTDESK_IP_CONNECT_RATE": "1000000/minute",
    "FRONTDESK_IP_REQUEST_RATE": "1000000/minute",
    "FRONTDESK_RATE_LIMIT_MESSAGES": "1000000",
    "FRONTDESK_RATE_LIMIT_FRAMES": "1000000",
    "FRONTDESK_LOG_FORMAT": "json",
}


def base_env(home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "FRONTDESK_HOME": str(home),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }


def ensure_trained(home: Path, bot: Path = BOT) -> float | None:
    """Train ``bot`` into ``home`` unless it already has a current model; returns the
    training time in seconds, or None when the home was reused."""
    if (home / "models" / "current").is_file():
        return None
    home.mkdir(parents=True, exist_ok=True)
    exe = Path(sys.executable).with_name("frontdesk")
    cli = [str(exe)] if exe.exists() else [sys.executable, "-m", "channels.cli"]
    print(f"training {bot} into {home} ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    subprocess.run(
        [*cli, "train", "--bot", str(bot), "--json"],
        env=base_env(home),
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return round(time.perf_counter() - start, 1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def raise_nofile() -> int:
    """Raise this process's open-file limit to its hard limit; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank-ish percentile (same rule as demo_latency.py); None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def rnd(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus exposition -> {'name{labels}': value} (comments dropped)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        try:
            out[name] = float(value)
        except ValueError:
            continue
    return out


class Server:
    """`frontdesk serve` for the shop bot in a subprocess, with a fresh store by default.

    ``database_url`` None: a new SQLite file under ``home/bench/`` (same file system as the
    default store, so the same fsync cost), deleted when the server stops.
    """

    def __init__(
        self,
        home: Path,
        *,
        label: str = "server",
        env: dict[str, str] | None = None,
        database_url: str | None = None,
        bot: Path = BOT,
        raise_nofile: bool = False,
    ) -> None:
        self.home = home
        self.label = label
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/ws/chat"
        bench = home / "bench"
        bench.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        slug = "".join(c if c.isalnum() or c in "-_." else "-" for c in label)
        self.log_path = bench / f"{stamp}-{slug}-{self.port}.log"
        self._db_path: Path | None = None
        if database_url is None:
            self._db_path = bench / f"{stamp}-{slug}-{self.port}.db"
            database_url = f"sqlite+aiosqlite:///{self._db_path.resolve()}"
        self.database_url = database_url
        self.env = {
            **base_env(home),
            **BENCH_ENV,
            "FRONTDESK_DATABASE_URL": database_url,
            **(env or {}),
        }
        self.bot = bot
        self.raise_nofile = raise_nofile
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    # lifecycle -------------------------------------------------------------------------

    def start(self, ready_timeout_s: float = 180.0) -> Server:
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "channels.cli",
                "serve",
                "--bot",
                str(self.bot),
                "--port",
                str(self.port),
            ],
            env=self.env,
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=_raise_nofile_quietly if self.raise_nofile else None,
        )
        deadline = time.monotonic() + ready_timeout_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"server exited with {self.proc.returncode} while starting; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=2) as resp:
                    if resp.status == 200:
                        return self
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"server not ready after {ready_timeout_s}s; {self.log_path}")
            time.sleep(0.25)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._db_path is not None:
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(str(self._db_path) + suffix).unlink(missing_ok=True)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # measurements ----------------------------------------------------------------------

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cpu_seconds(self) -> float:
        """User + system CPU of the server process (all its threads) and of its live worker
        processes (``FRONTDESK_WORKERS``), from /proc."""
        return sum(_cpu_seconds(pid) for pid in (self.pid, *_descendants(self.pid)))

    def wait_quiet(self, limit_s: float = 120.0, cores: float = 0.15) -> float:
        """Wait until the server uses less than ``cores`` of CPU over half a second (it has
        worked off what it had queued); returns the seconds waited."""
        start = time.monotonic()
        last = self.cpu_seconds()
        while time.monotonic() - start < limit_s:
            time.sleep(0.5)
            now = self.cpu_seconds()
            if now - last < cores * 0.5:
                break
            last = now
        return time.monotonic() - start

    def rss_bytes(self) -> int:
        """Resident memory of the server process and its worker processes."""
        pids = (self.pid, *_descendants(self.pid))
        return sum(_status_kib(pid, "VmRSS") for pid in pids) * 1024

    def threads(self) -> int:
        return _status_kib(self.pid, "Threads")

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def nofile_limit(self) -> int | None:
        with open(f"/proc/{self.pid}/limits", encoding="ascii") as f:
            for line in f:
                if line.startswith("Max open files"):
                    return int(line.split()[3])
        return None

    def metrics(self) -> dict[str, float]:
        with urllib.request.urlopen(self.url + "/metrics", timeout=10) as resp:
            return parse_metrics(resp.read().decode())

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def log_summary(self, examples: int = 5) -> dict[str, Any]:
        """Counts of the server's log lines by level, and the first few warnings/errors."""
        levels: Counter[str] = Counter()
        firsts: list[str] = []
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return {"log": str(self.log_path), "levels": {}}
        for line in text.splitlines():
            try:
                record = json.loads(line)
                level = str(record.get("level", "?")).upper()
                message = str(record.get("message", ""))
            except (ValueError, AttributeError):
                level, message = "TEXT", line  # uvicorn's startup print, tracebacks
            levels[level] += 1
            if level in {"WARNING", "ERROR", "CRITICAL"} and len(firsts) < examples:
                firsts.append(message[:300])
        return {"log": str(self.log_path), "levels": dict(levels), "first_problems": firsts}


def metrics_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    """Batching and reply figures over a window, from two /metrics scrapes."""

    def d(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    batches = d("frontdesk_batch_size_count")
    replies = d("frontdesk_reply_seconds_count")
    refused = {
        k.split('"')[1]: v - before.get(k, 0.0)
        for k, v in after.items()
        if k.startswith("frontdesk_refused_total{") and v - before.get(k, 0.0) > 0
    }
    return {
        "batches": batches,
        "mean_batch": rnd(d("frontdesk_batch_size_sum") / batches, 2) if batches else None,
        "inference_ms_per_batch": (
            rnd(d("frontdesk_inference_seconds_sum") / batches * 1000, 2) if batches else None
        ),
        "server_reply_ms_mean": (
            rnd(d("frontdesk_reply_seconds_sum") / replies * 1000, 1) if replies else None
        ),
        "refused": refused or None,
    }


def _status_kib(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def _raise_nofile_quietly() -> None:
    with contextlib.suppress(ValueError, OSError):
        raise_nofile()


def machine() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "python": sys.version.split()[0],
        "date": time.strftime("%Y-%m-%d"),
    }


__all__ = [
    "BENCH_ENV",
    "BOT",
    "ROOT",
    "Server",
    "base_env",
    "ensure_trained",
    "free_port",
    "machine",
    "metrics_delta",
    "parse_metrics",
    "percentile",
    "raise_nofile",
    "rnd",
]


def _cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rpartition(")")[2].split()
    except FileNotFoundError:  # a worker that just ended
        return 0.0
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _descendants(pid: int) -> list[int]:
    """The processes started by ``pid`` and theirs, from /proc (Linux)."""
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except FileNotFoundError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{parent}/task/{task}/children", encoding="ascii") as f:
                    children = [int(c) for c in f.read().split()]
            except FileNotFoundError:
                continue
            found += children
            todo += children
    return found
