"""A tried-and-rejected idea, kept so its figures can be checked: mixing a k-nearest-
neighbour vote over the training rows' fine-tuned embeddings into the intent head.

Takes a Banking77 model written by `frontdesk intents train` (with its own validation
carve-out), rebuilds that carve-out from the saved training arguments, and prints accuracy
of the predicted intent on validation and test for several k and mixing weights.

    python benchmarks/intents_knn_mix.py --model DIR [--data ../shared/data/banking77]
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def read(path: Path) -> tuple[list[str], list[str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [r["text"] for r in rows], [r["category"] for r in rows]


def knn_probs(
    queries: np.ndarray, keys: np.ndarray, key_labels: np.ndarray, classes: int, k: int
) -> np.ndarray:
    """Similarity-weighted vote of the k nearest keys. (Q, D), (N, D) -> (Q, classes)."""
    sims = queries @ keys.T
    top = np.argpartition(-sims, k, axis=1)[:, :k]
    votes = np.zeros((len(queries), classes))
    for row in range(len(queries)):
        np.add.at(votes[row], key_labels[top[row]], np.exp(sims[row, top[row]] / 0.05))
    out: np.ndarray = votes / votes.sum(axis=1, keepdims=True)
    return out


def main() -> None:
    from retrieval import scoring
    from retrieval.bundle import Bundle
    from training.args import TrainingArguments
    from training.intents import split_validation

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "banking77")
    options = parser.parse_args()
    bundle = Bundle.load(options.model)
    head = bundle.head
    args = TrainingArguments.load(options.model / "training_args.json")
    texts, labels = read(options.data / "train.csv")
    train_idx, valid_idx = split_validation(labels, args.valid_fraction, args.seed)
    emb = bundle.encoder.encode(texts)
    y = np.asarray([head.labels.index(label) for label in labels])
    test_texts, test_labels = read(options.data / "test.csv")
    sets = {
        "valid": (emb[valid_idx], y[valid_idx]),
        "test": (
            bundle.encoder.encode(test_texts),
            np.asarray([head.labels.index(label) for label in test_labels]),
        ),
    }
    result: dict[str, dict[str, float]] = {}
    for name, (queries, truth) in sets.items():
        head_probs = scoring.softmax(head.logits(queries), head.temperature)
        result[name] = {"head": float((head_probs.argmax(axis=1) == truth).mean())}
        for k in (5, 10, 20):
            votes = knn_probs(queries, emb[train_idx], y[train_idx], len(head.labels), k)
            for weight in (0.2, 0.3, 0.5, 1.0):
                mixed = (1 - weight) * head_probs + weight * votes
                result[name][f"k{k}_w{weight}"] = float((mixed.argmax(axis=1) == truth).mean())
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
