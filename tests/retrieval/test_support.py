"""An intent's answer scored on the past replies' scale: near examples, near answer."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from retrieval.ranking import ReplyCalibration
from retrieval.support import IntentSupport


def unit(*values: float) -> np.ndarray:
    v = np.asarray(values, dtype=np.float32)
    return v / np.linalg.norm(v)


def support() -> IntentSupport:
    examples = np.stack([unit(1, 0, 0), unit(1, 0.2, 0), unit(0, 1, 0)])
    return IntentSupport(
        examples=examples,
        labels=np.asarray([0, 0, 1]),
        answers=np.stack([unit(1, 0, 0.3), np.zeros(3, dtype=np.float32)]),
        answered=np.asarray([True, False]),
        intents=("refunds", "order_status"),
    )


def test_support_is_the_calibrated_mix_of_the_nearest_example_and_the_answer() -> None:
    """Context: cosine to the intent's nearest example; reply: to its answer text (the
    nearest example again for an intent with no answer text); then the calibration."""
    calibration = ReplyCalibration(weight=0.5, slope=10.0, intercept=-5.0)
    query = unit(1, 0.1, 0)[None, :]
    scores = support().scores(query, calibration)
    nearest = max(float(query[0] @ unit(1, 0, 0)), float(query[0] @ unit(1, 0.2, 0)))
    reply = float(query[0] @ unit(1, 0, 0.3))
    expected = calibration.probability(np.float32([0.5 * nearest + 0.5 * reply]))[0]
    assert np.isclose(scores[0, 0], expected, atol=1e-6)
    far = float(query[0] @ unit(0, 1, 0))
    assert np.isclose(scores[0, 1], calibration.probability(np.float32([far]))[0], atol=1e-6)
    assert scores[0, 0] > scores[0, 1]


def test_columns_follow_the_heads_order_and_survive_a_round_trip(tmp_path: Path) -> None:
    """The bundle reorders the columns to the head's intents; saved and loaded it is equal."""
    original = support()
    swapped = original.in_order(("order_status", "refunds"))
    query = unit(0, 1, 0.1)[None, :]
    calibration = ReplyCalibration()
    assert np.allclose(
        swapped.scores(query, calibration)[:, ::-1], original.scores(query, calibration)
    )
    original.save(tmp_path / "s.npz")
    loaded = IntentSupport.load(tmp_path / "s.npz")
    assert loaded.intents == original.intents
    assert np.allclose(loaded.scores(query, calibration), original.scores(query, calibration))
