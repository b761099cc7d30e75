"""The metrics of `frontdesk intents eval`, on hand-built predictions."""

from __future__ import annotations

import numpy as np
import pytest

from training.evaluation import (
    REJECTED,
    Predictions,
    confused_pairs,
    metrics,
    predictions,
    worst_intents,
)

INTENTS = ("greet", "refund", "track")


def _predict(truth: list[str], best: list[str], rejected: list[bool]) -> Predictions:
    probs = np.full((len(truth), 3), 0.05, dtype=np.float32)
    for row, name in enumerate(best):
        probs[row, INTENTS.index(name)] = 0.9
    oos = np.asarray([0.9 if r else 0.1 for r in rejected], dtype=np.float32)
    return predictions(truth, INTENTS, probs, oos, "oos")


def test_accuracy_counts_rejected_oos_as_right_and_rejected_in_scope_as_wrong() -> None:
    p = _predict(
        ["greet", "refund", "track", "oos", "oos"],
        ["greet", "refund", "refund", "greet", "track"],
        [False, True, False, True, False],
    )
    m = metrics(p)
    assert m["n"] == 5
    assert m["accuracy"] == pytest.approx(2 / 5)  # greet kept right, first oos rejected
    assert m["in_scope_accuracy"] == pytest.approx(1 / 3)
    assert m["oos_recall"] == pytest.approx(1 / 2)
    assert m["oos_precision"] == pytest.approx(1 / 2)  # rejected: refund row and an oos row
    assert isinstance(m["macro_f1"], float) and 0 <= m["macro_f1"] <= 1


def test_oos_fields_are_null_without_oos_rows() -> None:
    p = _predict(["greet", "track"], ["greet", "track"], [False, False])
    m = metrics(p)
    assert m["accuracy"] == 1.0 and m["macro_f1"] == 1.0
    assert m["oos_recall"] is None and m["oos_precision"] is None


def test_worst_intents_and_confused_pairs() -> None:
    p = _predict(
        ["track", "track", "track", "greet", "refund"],
        ["refund", "refund", "track", "greet", "refund"],
        [False, False, False, False, True],
    )
    worst = worst_intents(p)
    assert worst[0].intent in {"refund", "track"} and worst[-1].intent == "greet"
    assert confused_pairs(p) == [("track", "refund", 2), ("refund", REJECTED, 1)]
