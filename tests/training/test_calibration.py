"""Temperature scaling, calibration error and the out-of-scope threshold (pure numpy)."""

from __future__ import annotations

import numpy as np
import pytest

from retrieval.intent_head import IntentHead
from training import calibration


def _sample(rng: np.random.Generator, logits: np.ndarray, temperature: float) -> np.ndarray:
    z = logits / temperature
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    return np.asarray([rng.choice(len(row), p=row) for row in p], dtype=np.int64)


def test_fit_temperature_recovers_the_true_temperature() -> None:
    """Labels drawn from softmax(logits / 2.5): the fitted temperature is close to 2.5."""
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 4, size=(4000, 6)).astype(np.float32)
    labels = _sample(rng, logits, 2.5)
    assert calibration.fit_temperature(logits, labels) == pytest.approx(2.5, rel=0.1)


def test_ece_is_zero_when_calibrated_and_large_when_overconfident() -> None:
    rng = np.random.default_rng(1)
    confidence = rng.uniform(0.3, 1.0, 20000).astype(np.float32)
    calibrated = rng.uniform(size=confidence.shape) < confidence
    assert calibration.expected_calibration_error(confidence, calibrated) < 0.02
    overconfident = np.full(1000, 0.99, dtype=np.float32)
    half_right = np.arange(1000) % 2 == 0
    assert calibration.expected_calibration_error(overconfident, half_right) == pytest.approx(
        0.49, abs=1e-6
    )


def test_threshold_separates_in_scope_from_out_of_scope() -> None:
    in_conf = np.asarray([0.9, 0.8, 0.95, 0.7], dtype=np.float32)
    correct = np.asarray([True, True, True, False])
    oos_conf = np.asarray([0.2, 0.3, 0.6], dtype=np.float32)
    t = calibration.choose_threshold(in_conf, correct, oos_conf)
    # keeps the right 0.8/0.9/0.95, rejects every oos row and the wrong 0.7 answer
    assert t == pytest.approx((0.7 + 0.8) / 2)
    assert calibration.choose_threshold(in_conf, correct, np.zeros(0, np.float32)) == 0.0


def test_held_out_confidence_ignores_the_true_class() -> None:
    """A row is scored as if its own intent did not exist."""
    logits = np.asarray([[10.0, 0.0, 0.0], [0.0, 10.0, 9.0]], dtype=np.float32)
    conf = calibration.held_out_confidence(logits, np.asarray([0, 1]), 1.0)
    assert conf[0] == pytest.approx(0.5)  # two equal remaining classes
    assert conf[1] == pytest.approx(1 / (1 + np.exp(-9)), rel=1e-4)


def test_in_scope_confidence_leaves_out_the_oos_class() -> None:
    probs = np.asarray([[0.1, 0.2, 0.7]], dtype=np.float32)

    def head(oos_label: str | None) -> IntentHead:
        weight, bias = np.eye(3, dtype=np.float32), np.zeros(3, dtype=np.float32)
        return IntentHead(("a", "b", "oos"), weight, bias, 1.0, 0.5, oos_label)

    assert head("oos").in_scope(probs).max(axis=1)[0] == pytest.approx(0.2)
    assert head(None).in_scope(probs).max(axis=1)[0] == pytest.approx(0.7)


def test_threshold_cap_on_rejected_right_answers() -> None:
    """With a cap, the threshold gives up out-of-scope recall before rejecting right answers."""
    in_conf = np.asarray([0.5, 0.6, 0.9, 0.95], dtype=np.float32)
    correct = np.ones(4, dtype=bool)
    oos_conf = np.asarray([0.55, 0.7, 0.8], dtype=np.float32)
    free = calibration.choose_threshold(in_conf, correct, oos_conf)
    assert 0.8 < free < 0.9  # rejects every oos row and two right answers
    capped = calibration.choose_threshold(in_conf, correct, oos_conf, max_lost=0.25)
    assert capped <= 0.6  # at most one right answer of four rejected
