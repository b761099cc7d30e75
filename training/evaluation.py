"""Intent metrics over a labelled test set: the numbers of ``frontdesk intents eval``.

A row labelled with the out-of-scope label is counted right when the model rejects it; an
in-scope row is right when the predicted intent is its label and the model does not reject
it. Pure numpy/scikit-learn over predictions; no model runs here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from sklearn.metrics import f1_score, roc_auc_score

from training.calibration import expected_calibration_error

Array = npt.NDArray[np.float32]
REJECTED = "<out of scope>"


@dataclass(frozen=True)
class Predictions:
    """Per test row: the true label, the model's best intent, its confidence and whether
    it was rejected as out of scope."""

    truth: tuple[str, ...]
    intent: tuple[str, ...]
    confidence: Array  # (N,) highest in-scope probability
    rejected: npt.NDArray[np.bool_]  # (N,)
    oos_label: str

    @property
    def is_oos(self) -> npt.NDArray[np.bool_]:
        return np.asarray([t == self.oos_label for t in self.truth], dtype=bool)

    @property
    def final(self) -> tuple[str, ...]:
        """What the bot acts on: the intent, or the out-of-scope label when rejected."""
        return tuple(
            self.oos_label if r else i for i, r in zip(self.intent, self.rejected, strict=True)
        )

    @property
    def correct(self) -> npt.NDArray[np.bool_]:
        return np.asarray([f == t for f, t in zip(self.final, self.truth, strict=True)], dtype=bool)

    @property
    def intent_right(self) -> npt.NDArray[np.bool_]:
        """Whether the best intent is the true label, rejected or not: what the confidence
        claims, and what calibration (ECE, reliability diagrams) compares it with."""
        return np.asarray(
            [i == t for i, t in zip(self.intent, self.truth, strict=True)], dtype=bool
        )


def predictions(
    truth: Sequence[str],
    intents: Sequence[str],
    probs: Array,
    oos_scores: Array,
    oos_label: str,
) -> Predictions:
    """From in-scope probabilities (N, C_in) over ``intents`` and out-of-scope scores (N,)."""
    best = probs.argmax(axis=1)
    return Predictions(
        truth=tuple(truth),
        intent=tuple(intents[i] for i in best),
        confidence=probs.max(axis=1).astype(np.float32),
        rejected=oos_scores >= 0.5,
        oos_label=oos_label,
    )


def _ratio(num: int, den: int) -> float | None:
    return None if den == 0 else num / den


def metrics(p: Predictions) -> dict[str, float | int | None]:
    """The ``intents eval --json`` object."""
    n = len(p.truth)
    is_oos = p.is_oos
    correct = p.correct
    in_scope = ~is_oos
    labels = sorted(set(p.truth))
    macro_f1 = float(
        f1_score(list(p.truth), list(p.final), labels=labels, average="macro", zero_division=0)
    )
    has_oos = bool(is_oos.any())
    right_intent = p.intent_right
    return {
        "n": n,
        "accuracy": float(correct.mean()) if n else None,
        "macro_f1": macro_f1,
        "in_scope_accuracy": float(correct[in_scope].mean()) if in_scope.any() else None,
        "oos_recall": _ratio(int((p.rejected & is_oos).sum()), int(is_oos.sum()))
        if has_oos
        else None,
        "oos_precision": (_ratio(int((p.rejected & is_oos).sum()), int(p.rejected.sum())) or 0.0)
        if has_oos
        else None,
        "ece": expected_calibration_error(p.confidence[in_scope], right_intent[in_scope])
        if in_scope.any()
        else None,
    }


def oos_auroc(p: Predictions) -> float | None:
    """Area under the ROC curve of (1 - confidence) as an out-of-scope detector."""
    is_oos = p.is_oos
    if not is_oos.any() or is_oos.all():
        return None
    return float(roc_auc_score(is_oos, -p.confidence))


@dataclass(frozen=True)
class IntentErrors:
    intent: str
    support: int
    f1: float
    recall: float


def worst_intents(p: Predictions, k: int = 10) -> list[IntentErrors]:
    labels = sorted(set(p.truth))
    scores = f1_score(list(p.truth), list(p.final), labels=labels, average=None, zero_division=0)
    support = Counter(p.truth)
    right = Counter(t for t, f in zip(p.truth, p.final, strict=True) if t == f)
    rows = [
        IntentErrors(label, support[label], float(f1), right[label] / support[label])
        for label, f1 in zip(labels, scores, strict=True)
    ]
    return sorted(rows, key=lambda r: (r.f1, r.intent))[:k]


def confused_pairs(p: Predictions, k: int = 10) -> list[tuple[str, str, int]]:
    """Most frequent (true, predicted) mistakes, rejections shown as :data:`REJECTED`."""
    pairs = Counter(
        (t, REJECTED if r else i)
        for t, i, r, ok in zip(p.truth, p.intent, p.rejected, p.correct, strict=True)
        if not ok
    )
    return [(t, f, c) for (t, f), c in sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0]))[:k]]
