"""Continual learning on Banking77: four stages of about 19 intents each (intents in sorted
order), each stage trained on its own rows only, continuing from the stage before
(`frontdesk intents train --train STAGE --from PREVIOUS --out DIR`, through the same
library call). Reported after each stage: test accuracy on every intent seen so far and on
each earlier stage's intents, and the stage's training time. The same stages trained with
no replay (naive sequential fine-tuning, the lower bound) and one training on all the data
(the upper bound, and the denominator of the time ratio) run in the same process.

Accuracy is `frontdesk intents eval`'s: a row is right when its intent is predicted and it
is not rejected as out of scope, with the encoder as the server loads it
(FRONTDESK_ENCODER_INT8).

    .venv/bin/python benchmarks/continual_banking77.py [--data ../shared/data/banking77]
        [--keep DIR] [--skip-naive] [--skip-all] [--set NAME=VALUE ...]
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from channels.settings import Settings  # noqa: E402
from retrieval.bundle import Bundle  # noqa: E402
from training.args import TrainingArguments  # noqa: E402
from training.continual import start_from  # noqa: E402
from training.intent_data import IntentRows  # noqa: E402
from training.intent_eval import served_predictions  # noqa: E402
from training.intent_model import train_intent_model  # noqa: E402

STAGES = 4


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def read_csv(path: Path) -> list[tuple[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return [(r["text"], r.get("category") or r["intent"]) for r in csv.DictReader(handle)]


def write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(("text", "intent"))
        writer.writerows(rows)
    return path


def accuracy(model: Path, rows: list[tuple[str, str]], int8: bool) -> float:
    bundle = Bundle.load(model, int8=int8)
    p = served_predictions(bundle, IntentRows(tuple(t for t, _ in rows), tuple(y for _, y in rows)))
    return sum(f == t for f, t in zip(p.final, p.truth, strict=True)) / len(rows)


def run_stages(
    name: str,
    stages: list[list[str]],
    train: list[tuple[str, str]],
    test: list[tuple[str, str]],
    work: Path,
    args: TrainingArguments,
    int8: bool,
    first: Path | None = None,
) -> list[dict[str, object]]:
    report: list[dict[str, object]] = []
    previous: Path | None = None
    for k, intents in enumerate(stages, 1):
        if k == 1 and first is not None:  # the same fresh training: reused
            previous = first
            continue
        keep = set(intents)
        data = write_csv(work / f"{name}-stage{k}.csv", [r for r in train if r[1] in keep])
        out = work / f"{name}-m{k}"
        started = time.perf_counter()
        result = train_intent_model(
            data,
            out,
            args=args,
            progress=False,
            start=start_from(previous) if previous is not None else None,
        )
        seconds = time.perf_counter() - started
        seen = {i for stage in stages[:k] for i in stage}
        row: dict[str, object] = {
            "stage": k,
            "seconds": round(seconds, 1),
            "train_rows": result.train_rows,
            "replayed_rows": result.replayed_rows,
            "epochs": result.epochs,
            "accuracy_seen": accuracy(out, [r for r in test if r[1] in seen], int8),
            "accuracy_by_stage": [
                accuracy(out, [r for r in test if r[1] in set(stage)], int8) for stage in stages[:k]
            ],
        }
        print(json.dumps({name: row}), flush=True)
        report.append(row)
        previous = out
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/banking77")
    parser.add_argument("--keep", type=Path, help="write the models here instead of a temp dir")
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--skip-all", action="store_true", help="no all-at-once training")
    parser.add_argument(
        "--first", type=Path, help="a stage-1 model of an earlier run to continue from (reused)"
    )
    parser.add_argument("--set", action="append", default=[], help="training argument")
    opts = parser.parse_args()
    overrides = {k: json.loads(v) for k, v in (s.split("=", 1) for s in opts.set)}
    args = TrainingArguments(**overrides)
    int8 = Settings().encoder_int8
    train, test = read_csv(opts.data / "train.csv"), read_csv(opts.data / "test.csv")
    intents = sorted({y for _, y in train})
    size = -(-len(intents) // STAGES)
    stages = [intents[i : i + size] for i in range(0, len(intents), size)]
    work = opts.keep or Path(tempfile.mkdtemp(prefix="continual-b77-"))
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, object] = {
        "cpu": cpu_model(),
        "stages": [len(s) for s in stages],
        "args": overrides,
        "int8": int8,
    }
    results["continual"] = run_stages(
        "continual", stages, train, test, work, args, int8, first=opts.first
    )
    if not opts.skip_naive:
        naive = replace(args, replay_per_intent=0)
        results["naive"] = run_stages("naive", stages, train, test, work, naive, int8)
    if not opts.skip_all:
        started = time.perf_counter()
        out = work / "all"
        train_intent_model(write_csv(work / "all.csv", train), out, args=args, progress=False)
        results["all_at_once"] = {
            "seconds": round(time.perf_counter() - started, 1),
            "accuracy": accuracy(out, test, int8),
        }
        print(json.dumps({"all_at_once": results["all_at_once"]}), flush=True)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
