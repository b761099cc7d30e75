"""BANKING77-OOS: in-scope accuracy and out-of-scope detection.

Two settings, each trained with the stable command line and no other flags:

- `with-oos`: training rows = `train` + `id-oos/train` (labelled `oos`); validation rows =
  `valid` + `id-oos/valid` + `ood-oos/valid` (given with `--valid`: the threshold is chosen
  on them only);
- `no-oos`: training rows = `train` only, validation = `valid` only: the detector has never
  seen an out-of-scope message (a new bot's case).

Reported on the test splits: in-scope accuracy (right intent and not rejected), ID-OOS
recall (`id-oos/test`), OOD-OOS recall (`ood-oos/test`), AUROC of the confidence as a
detector over all three. Prints one JSON object.

    python benchmarks/intents_oos.py [--data ../shared/data/banking77-oos] [--only with-oos]
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


def read_split(folder: Path, label: str | None = None) -> list[tuple[str, str]]:
    texts = (folder / "seq.in").read_text(encoding="utf-8").splitlines()
    labels = (folder / "label").read_text(encoding="utf-8").splitlines()
    return [(t, label or y) for t, y in zip(texts, labels, strict=True) if t.strip()]


def write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "intent"])
        writer.writerows(rows)
    return path


def evaluate(model: Path, data: Path) -> dict[str, float | None]:
    import numpy as np

    from retrieval.bundle import Bundle
    from training.evaluation import Predictions, metrics, oos_auroc, predictions

    bundle = Bundle.load(model)
    splits = {
        "in_scope": read_split(data / "test"),
        "id_oos": read_split(data / "id-oos" / "test", "oos"),
        "ood_oos": read_split(data / "ood-oos" / "test", "oos"),
    }
    rows = [row for split in splits.values() for row in split]
    truth = [label for _, label in rows]
    probs, oos = bundle.predict_intents([text for text, _ in rows])  # one pass over all

    def scored(start: int, stop: int) -> Predictions:
        part = slice(start, stop)
        return predictions(truth[part], bundle.head.intents, probs[part], oos[part], "oos")

    out: dict[str, float | None] = {}
    start = 0
    for name, split in splits.items():
        p = scored(start, start + len(split))
        start += len(split)
        if name == "in_scope":
            numbers = metrics(p)
            out["in_scope_accuracy"] = numbers["in_scope_accuracy"]
            out["in_scope_accuracy_no_rejection"] = float(
                np.mean([i == t for i, t in zip(p.intent, p.truth, strict=True)])
            )
            out["ece"] = numbers["ece"]
        else:
            out[f"{name}_recall"] = metrics(p)["oos_recall"]
    out["auroc"] = oos_auroc(scored(0, len(rows)))
    return out


def run(setting: str, data: Path, tmp: Path, env: dict[str, str]) -> dict[str, object]:
    train = read_split(data / "train")
    valid = read_split(data / "valid")
    if setting == "with-oos":
        train += read_split(data / "id-oos" / "train", "oos")
        valid += read_split(data / "id-oos" / "valid", "oos")
        valid += read_split(data / "ood-oos" / "valid", "oos")
    train_csv = write_csv(tmp / f"{setting}-train.csv", train)
    valid_csv = write_csv(tmp / f"{setting}-valid.csv", valid)
    model = tmp / f"{setting}-model"
    started = time.perf_counter()
    subprocess.run(
        [*FRONTDESK, "intents", "train", "--train", str(train_csv), "--valid", str(valid_csv),
         "--out", str(model)],
        check=True, env=env, cwd=ROOT,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    return {"train_rows": len(train), "train_seconds": round(seconds, 1), **evaluate(model, data)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--data", type=Path, default=ROOT.parent / "shared" / "data" / "banking77-oos"
    )
    parser.add_argument("--only", choices=["with-oos", "no-oos"])
    options = parser.parse_args()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    settings = [options.only] if options.only else ["with-oos", "no-oos"]
    result: dict[str, object] = {"cpu_count": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="banking77-oos-") as tmp:
        for setting in settings:
            result[setting] = run(setting, options.data, Path(tmp), env)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
