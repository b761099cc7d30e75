"""Fit how retrieved replies are scored: the mix of context and reply similarity, and the
logistic curve that turns it into the probability that the best reply is right.

Fitted on held-out conversations: each of their (context -> reply) pairs queries the index
with its own conversation's turns left out; the top candidate is right when it is the same
answer (near-duplicate group) the agent gave.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression

from retrieval.bundle import TextEncoder
from retrieval.context import ContextEncoding
from retrieval.index import DialogueIndex, IndexedTurn
from retrieval.ranking import ReplyCalibration, rank_hits

log = logging.getLogger(__name__)

WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
MIN_CASES = 50
DEPTH = 20


def fit_reply_calibration(
    encoder: TextEncoder,
    index: DialogueIndex,
    pairs: Sequence[IndexedTurn],
    held_out: Collection[str],
    context: ContextEncoding | None = None,
) -> ReplyCalibration:
    """The calibration fitted on the pairs of the ``held_out`` conversation ids (defaults
    when they give fewer than :data:`MIN_CASES` cases or only one outcome); windows are
    read as ``context`` says (joint by default)."""
    cases = [p for p in pairs if p.conversation_id in held_out]
    if len(cases) < MIN_CASES:
        return ReplyCalibration()
    queries = (context or ContextEncoding()).encode(encoder.encode, [p.context for p in cases])
    hits = index.search(queries, DEPTH * 2)
    hits = [
        [h for h in row if h.item.conversation_id != case.conversation_id][:DEPTH]
        for row, case in zip(hits, cases, strict=True)
    ]
    best: tuple[float, float] | None = None  # (accuracy, weight)
    outcomes: dict[float, tuple[np.ndarray, np.ndarray]] = {}
    for weight in WEIGHTS:
        trial = ReplyCalibration(weight=weight, slope=1.0, intercept=0.0)
        fused, right = [], []
        for query, row, case in zip(queries, hits, cases, strict=True):
            top = rank_hits(query, row, trial, 1)
            if top:
                # probability() is monotone: invert it to get the fused score back
                p = min(max(top[0].score, 1e-7), 1 - 1e-7)
                fused.append(float(np.log(p / (1 - p))))
                right.append(top[0].group == case.group)
        x, y = np.asarray(fused), np.asarray(right)
        outcomes[weight] = (x, y)
        accuracy = float(y.mean()) if y.size else 0.0
        if best is None or accuracy > best[0]:
            best = (accuracy, weight)
    assert best is not None
    accuracy, weight = best
    x, y = outcomes[weight]
    if y.size < MIN_CASES or y.all() or not y.any():
        return ReplyCalibration(weight=weight)
    model = LogisticRegression(C=10.0).fit(x[:, None], y)
    calibration = ReplyCalibration(
        weight=weight,
        slope=float(model.coef_[0, 0]),
        intercept=float(model.intercept_[0]),
        fitted_on=int(y.size),
    )
    log.info(
        "reply calibration: weight %.2f, top-1 right on %.1f%% of %d held-out cases",
        weight,
        100 * accuracy,
        y.size,
    )
    return calibration
