"""Fit the intent support's own calibration (``retrieval.support``): how likely an intent's
answer is right given how near the message is to the intent's examples and its answer.

Fitted on the bot's examples as serving sees them: each example is a new customer message
scored against every intent with the example itself left out (an intent's support is its
nearest other example, as at serving time against all of them), and for every other
example its own intent is left out too, so that the nearest intent is a wrong one: a
question no intent answers (a past chat might, or nobody). Right: the intent of the best
support is the example's own. The threshold from which an intent's answer is worth giving
is chosen on the same cases as the past replies' one (``fit_threshold``).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from retrieval.ranking import ReplyCalibration
from retrieval.support import IntentSupport
from training.reply_calibration import MAX_CASES, MIN_CASES, WEIGHTS, fit_curve


def fit_support_calibration(support: IntentSupport, seed: int = 13) -> ReplyCalibration:
    """The calibration of ``support`` (whose own one is ignored here); the defaults when the
    bot has too few examples or only one outcome."""
    rng = np.random.default_rng(seed)
    examples, labels = support.examples, support.labels
    if len(labels) < MIN_CASES or len(support.intents) < 2:
        return ReplyCalibration()
    order = rng.permutation(len(labels))[:MAX_CASES]
    sims = examples[order] @ examples.T  # (Q, N)
    sims[np.arange(len(order)), order] = -np.inf  # never its own nearest example
    nearest = np.full((len(order), len(support.intents)), -1.0, dtype=np.float32)
    np.maximum.at(nearest.T, labels, sims.T)  # (Q, C)
    reply = examples[order] @ support.answers.T  # (Q, C)
    reply = np.where(support.answered[None, :], reply, nearest)
    own = labels[order]
    dropped = np.arange(len(order)) % 2 == 1  # every other question: its intent is unknown
    gone = ~np.isfinite(nearest)  # an intent with no example but the question itself
    gone[dropped, own[dropped]] = True
    nearest = np.where(gone, 0.0, nearest)
    outcomes: dict[float, tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]] = {}
    for weight in WEIGHTS:
        fused = weight * nearest + (1.0 - weight) * reply  # (Q, C)
        fused = np.where(gone, -np.inf, fused)
        top = fused.argmax(axis=1)
        outcomes[weight] = (
            fused[np.arange(len(order)), top].astype(np.float64),
            top == own,
        )
    return fit_curve(outcomes, "intent support")
