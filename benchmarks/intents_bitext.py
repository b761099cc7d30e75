"""A second intent data set for the defaults: Bitext customer support (27 intents).

The defaults were chosen on Banking77; this checks them on data they were not tuned on,
as the product will be judged: `../shared/data/bitext-customer-support` (4,514 requests to
an online shop, 27 intents, no official split). A seeded split keeps ``--test-fraction``
of each intent's rows for the test; training and evaluation are the stable command line
(`frontdesk intents train`, `frontdesk intents eval --json`, no other flags), with the
frozen-MiniLM logistic regression as the baseline in the same run.

``--holdout K`` is a new bot's out-of-scope case: K intents (seeded) are left out of
training entirely and their test rows are labelled ``oos``, so the model has no
out-of-scope examples and must reject what it was never taught. ``--shots N`` trains on
N rows of each intent. Prints one JSON object.

    python benchmarks/intents_bitext.py [--holdout 5] [--shots 10] [--keep DIR]
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import tempfile
from pathlib import Path

from intents_banking77 import few_shot, frozen_baseline, train_and_eval
from intents_oos import write_csv

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "bitext-customer-support"


def read_bitext(folder: Path) -> dict[str, list[str]]:
    """Each intent's distinct requests, in file order."""
    (path,) = sorted(folder.glob("*.csv"))
    by_intent: dict[str, list[str]] = {}
    seen: set[str] = set()
    with path.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            text = row["instruction"].strip()
            if text and text not in seen:
                seen.add(text)
                by_intent.setdefault(row["intent"], []).append(text)
    return by_intent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--holdout", type=int, default=0, help="intents left out as oos")
    parser.add_argument("--shots", type=int, help="rows of each intent to train on (all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, help="model folder to write (default: temporary)")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    options = parser.parse_args()

    by_intent = read_bitext(options.data)
    rng = random.Random(options.seed)
    held_out = set(rng.sample(sorted(by_intent), options.holdout))
    train_rows: list[tuple[str, str]] = []
    test_rows: list[tuple[str, str]] = []
    for intent in sorted(by_intent):
        texts = by_intent[intent][:]
        rng.shuffle(texts)
        cut = round(len(texts) * options.test_fraction)
        label = "oos" if intent in held_out else intent
        test_rows += [(t, label) for t in texts[:cut]]
        if intent not in held_out:
            train_rows += [(t, intent) for t in texts[cut:]]

    with tempfile.TemporaryDirectory(prefix="bitext-") as tmp:
        train = write_csv(Path(tmp) / "train.csv", train_rows)
        test = write_csv(Path(tmp) / "test.csv", test_rows)
        if options.shots:
            train = few_shot(train, options.shots, Path(tmp) / f"train-{options.shots}.csv")
        model = options.keep or Path(tmp) / "model"
        result: dict[str, object] = {
            "intents": len(by_intent) - len(held_out),
            "held_out_intents": sorted(held_out),
            "train_rows": sum(1 for _ in train.open()) - 1,
            "test_rows": len(test_rows),
            "shots": options.shots,
            **train_and_eval(train, test, model, options.set),
        }
        if not options.no_baseline and not held_out:
            result["frozen_minilm_logreg"] = frozen_baseline(train, test)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
