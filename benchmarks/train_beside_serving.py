"""A retraining on the machine that serves: what it does to the server's latency, and what
the server does to the training's time.

The nightly retraining (docs/retrain.md) may run where `frontdesk serve` runs. Both want
every core: PyTorch's training steps start one thread per core, and so does onnxruntime's
encoder in the server. This serves `examples/shop` (as `load_ws.py` does) under an
open-loop load of `--rate` messages/s and, in each configuration, runs `frontdesk intents
train` (`--rows` rows of Banking77, `--epochs` epochs) beside it, with the training's
threads (`OMP_NUM_THREADS`) and priority (`--nice`) set as the configuration says; load
windows of `--window` seconds run for as long as the training does. "serve alone" and
"train alone" (at the default priority, which alone changes nothing) are the references,
measured in the same run.

    python benchmarks/train_beside_serving.py --home /tmp/fd-home

Needs `../shared/data/banking77/train.csv` (or `--data`).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _server import ROOT, Server, base_env, ensure_trained, percentile, rnd
from load_ws import ClientPool, WorkerOptions

DATA = ROOT.parent / "shared" / "data" / "banking77" / "train.csv"

CONFIGS: dict[str, dict[str, Any]] = {
    "serve alone": {"train": False},
    "train alone": {"serve": False},
    "both, training at the normal priority (--nice 0)": {"nice": 0},
    "both, --nice 0 on 1 thread": {"nice": 0, "threads": 1},
    "both, --nice 19 (the default)": {"nice": 19},
    "both, --nice 19 on 1 thread": {"nice": 19, "threads": 1},
}


def write_rows(data: Path, rows: int, out: Path) -> Path:
    """The first ``rows`` rows of a Banking77 CSV, every intent kept in order."""
    with data.open(newline="", encoding="utf-8") as src, out.open("w", newline="") as dst:
        reader = csv.reader(src)
        writer = csv.writer(dst)
        writer.writerow(next(reader))
        body = list(reader)
        step = max(1, len(body) // rows)
        writer.writerows(body[::step][:rows])
    return out


def start_training(csv_path: Path, out: Path, epochs: int, config: dict[str, Any]) -> Any:
    env = {**os.environ, **base_env(out.parent / "home")}
    if "threads" in config:
        env["OMP_NUM_THREADS"] = str(config["threads"])
    frontdesk = str(Path(sys.executable).parent / "frontdesk")
    command = [frontdesk, "intents", "train", "--train",
               str(csv_path), "--out", str(out), "--epochs", str(epochs), "--json"]  # fmt: skip
    if "nice" in config:
        command += ["--nice", str(config["nice"])]
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )


def run(
    args: argparse.Namespace, label: str, config: dict[str, Any], csv_path: Path
) -> dict[str, Any]:
    serve, train = config.get("serve", True), config.get("train", True)
    work = Path(tempfile.mkdtemp(prefix="fd-beside-"))
    server = pool = None
    windows: list[dict[str, Any]] = []
    train_s: float | None = None  # None: no training, or not done within --limit
    result: dict[str, Any] | None = None
    try:
        if serve:
            server = Server(args.home, label=label.replace(" ", "-").replace(",", ""))
            server.start()
            opts = WorkerOptions(url=server.ws_url, connections=args.connections)
            pool = ClientPool(opts, 1)
            pool.open()
            pool.run(server, args.rate, args.warmup, arrivals="poisson", seed=0, timeout_s=10)
        started = time.perf_counter()
        trainer = start_training(csv_path, work / "model", args.epochs, config) if train else None
        seed = 1
        while True:
            if pool is not None and server is not None:
                row = pool.run(
                    server, args.rate, args.window, arrivals="poisson", seed=seed, timeout_s=10
                )
                windows.append(row)
                seed += 1
            elif trainer is not None:
                trainer.wait()
            done = trainer is None and seed > args.alone_windows
            if trainer is not None and trainer.poll() is not None:
                train_s = time.perf_counter() - started
                if trainer.returncode != 0:
                    raise RuntimeError(f"[{label}] training failed ({trainer.returncode})")
                result = json.loads(trainer.stdout.read())
                trainer = None
                done = True
            if done or time.perf_counter() - started > args.limit:
                break
        if trainer is not None:
            trainer.kill()
    finally:
        if pool is not None:
            pool.close()
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return summary(label, windows, train_s, result)


def summary(
    label: str,
    windows: list[dict[str, Any]],
    train_s: float | None,
    result: dict[str, Any] | None,
) -> dict[str, Any]:
    p99 = [w["p99_ms"] for w in windows if w["p99_ms"] is not None]
    p50 = [w["p50_ms"] for w in windows if w["p50_ms"] is not None]
    return {
        "config": label,
        "windows": len(windows),
        "replies_per_s": rnd(sum(w["replies_per_s"] for w in windows) / len(windows))
        if windows
        else None,
        "p50_ms (median window)": rnd(percentile(p50, 50)) if p50 else None,
        "p99_ms (worst window)": rnd(max(p99)) if p99 else None,
        "timeouts": sum(w["timeouts"] for w in windows),
        "train_s": rnd(train_s) if train_s is not None else None,
        "train_s (as the command reports it)": rnd(result["seconds"]) if result else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", type=Path, required=True, help="FRONTDESK_HOME to serve")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--rows", type=int, default=1500)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--rate", type=float, default=80.0, help="messages/s")
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--window", type=float, default=10.0, help="seconds per load window")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--alone-windows", type=int, default=3)
    parser.add_argument("--limit", type=float, default=600.0, help="seconds per config")
    parser.add_argument("--only", action="append", help="configs to run (default: all)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not args.data.is_file():
        raise SystemExit(f"{args.data}: not found (--data)")
    ensure_trained(args.home)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        csv_path = write_rows(args.data, args.rows, Path(tmp) / "train.csv")
        for label, config in CONFIGS.items():
            if args.only and label not in args.only:
                continue
            row = run(args, label, config, csv_path)
            print(json.dumps(row), file=sys.stderr, flush=True)
            rows.append(row)
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join("–" if row[k] is None else str(row[k]) for k in keys) + " |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
