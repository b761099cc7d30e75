"""The intent support's own curve, fitted on the bot's examples as serving sees them."""

from __future__ import annotations

import numpy as np

from retrieval.ranking import ReplyCalibration
from retrieval.support import IntentSupport
from training.support_calibration import fit_support_calibration

DIM = 16


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def support(intents: int, per_intent: int, noise: float, seed: int = 0) -> IntentSupport:
    rng = np.random.default_rng(seed)
    topics = [unit(rng.normal(size=DIM)) for _ in range(intents)]
    examples = np.stack(
        [unit(t + noise * rng.normal(size=DIM)) for t in topics for _ in range(per_intent)]
    ).astype(np.float32)
    labels = np.repeat(np.arange(intents), per_intent)
    return IntentSupport(
        examples=examples,
        labels=labels,
        answers=np.stack(topics).astype(np.float32),
        answered=np.ones(intents, dtype=bool),
        intents=tuple(f"i{n}" for n in range(intents)),
    )


def test_the_curve_rises_with_support_and_sets_a_threshold() -> None:
    """Half the cases have their intent, half do not: the fitted probability rises with
    the fused score, and a threshold for an intent's answer is chosen."""
    fitted = fit_support_calibration(support(8, 12, 0.3))
    assert fitted.fitted_on == 96
    assert fitted.slope > 0
    assert fitted.threshold is not None and 0.3 <= fitted.threshold <= 0.9
    low, high = fitted.probability(np.float32([0.2, 0.9]))
    assert low < 0.5 < high


def test_too_few_examples_keep_the_defaults() -> None:
    """Under MIN_CASES examples there is nothing to fit on."""
    assert fit_support_calibration(support(2, 5, 0.3)) == ReplyCalibration()
