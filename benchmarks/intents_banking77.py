"""Banking77 intent accuracy: the product's defaults against a frozen-encoder baseline.

Trains with exactly the stable command line (`frontdesk intents train --train FILE --out
DIR`, no other flags), evaluates with `frontdesk intents eval --json` on the test split,
and, in the same run, fits a logistic regression on frozen all-MiniLM-L6-v2 embeddings as
the baseline the fine-tuned model must beat. Prints one JSON object.

    python benchmarks/intents_banking77.py [--data ../shared/data/banking77] [--keep DIR]
        [--set NAME=VALUE ...]   # a variant: training arguments other than the defaults
        [--shots N]              # train on N rows of each intent (seeded), a new bot's data

With `--set`, training runs in this process through the library with those arguments
(the command line takes none); evaluation is the same command.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FRONTDESK = [sys.executable, "-m", "channels.cli"]


def read_csv(path: Path) -> tuple[list[str], list[str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [r["text"] for r in rows], [r.get("category") or r["intent"] for r in rows]


def frozen_baseline(train: Path, test: Path) -> dict[str, float]:
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from retrieval.encoder import Encoder, base_model_path

    encoder = Encoder(base_model_path())
    x_train, y_train = read_csv(train)
    x_test, y_test = read_csv(test)
    started = time.perf_counter()
    e_train, e_test = encoder.encode(x_train), encoder.encode(x_test)
    clf = LogisticRegression(C=10.0, max_iter=2000)
    clf.fit(e_train, y_train)
    seconds = time.perf_counter() - started
    accuracy = float(np.mean(clf.predict(e_test) == np.asarray(y_test)))
    return {"accuracy": accuracy, "train_seconds": round(seconds, 1)}


def few_shot(train: Path, shots: int, out: Path, seed: int = 0) -> Path:
    """``shots`` rows of each intent of ``train``, drawn with ``seed``, as a CSV at ``out``."""
    import random

    texts, labels = read_csv(train)
    by_intent: dict[str, list[str]] = {}
    for text, label in zip(texts, labels, strict=True):
        by_intent.setdefault(label, []).append(text)
    rng = random.Random(seed)
    with out.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "category"])
        for label in sorted(by_intent):
            rows = by_intent[label]
            for text in rng.sample(rows, min(shots, len(rows))):
                writer.writerow([text, label])
    return out


def train_variant(train: Path, out: Path, settings: list[str]) -> None:
    from dataclasses import fields

    from training.args import TrainingArguments
    from training.intent_model import train_intent_model

    types = {f.name: f.type for f in fields(TrainingArguments)}
    overrides: dict[str, object] = {}
    for item in settings:
        name, _, raw = item.partition("=")
        if name not in types:
            raise SystemExit(f"unknown training argument {name!r}; known: {sorted(types)}")
        try:
            overrides[name] = json.loads(raw)
        except ValueError:
            overrides[name] = raw  # a plain word: a string setting (precision=bf16)
    train_intent_model(train, out, args=TrainingArguments(**overrides))  # type: ignore[arg-type]


def train_and_eval(train: Path, test: Path, model: Path, settings: list[str]) -> dict[str, object]:
    """Train ``model`` on ``train`` (the stable command line, or with ``settings`` through
    the library) and evaluate it on ``test`` with `frontdesk intents eval --json`."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    if settings:
        train_variant(train, model, settings)
    else:
        subprocess.run(
            [*FRONTDESK, "intents", "train", "--train", str(train), "--out", str(model)],
            check=True, env=env, cwd=ROOT,
        )  # fmt: skip
    train_seconds = time.perf_counter() - started
    out = subprocess.run(
        [*FRONTDESK, "intents", "eval", "--model", str(model), "--test", str(test), "--json"],
        check=True, env=env, cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    return {
        "cpu_count": os.cpu_count(),
        "variant": settings,
        "train_seconds": round(train_seconds, 1),
        "test": json.loads(out.stdout),
        "manifest_history": json.loads((model / "manifest.json").read_text())["history"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "banking77")
    parser.add_argument("--keep", type=Path, help="model folder to write (default: temporary)")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--shots", type=int, help="rows of each intent to train on (all)")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="banking77-") as tmp:
        model = options.keep or Path(tmp) / "model"
        train = options.data / "train.csv"
        if options.shots:
            train = few_shot(train, options.shots, Path(tmp) / f"train-{options.shots}.csv")
        result = {
            "shots": options.shots,
            **train_and_eval(train, options.data / "test.csv", model, options.set),
        }
        if not options.no_baseline:
            result["frozen_minilm_logreg"] = frozen_baseline(train, options.data / "test.csv")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
