"""Pure scoring functions over arrays."""

from __future__ import annotations

import numpy as np
import pytest

from retrieval import scoring


def test_softmax_rows_sum_to_one_and_temperature_flattens() -> None:
    """Softmax is a distribution per row; a higher temperature lowers the top probability."""
    logits = np.array([[2.0, 1.0, 0.0], [0.0, 0.0, 5.0]], dtype=np.float32)
    p1 = scoring.softmax(logits)
    p2 = scoring.softmax(logits, temperature=3.0)
    np.testing.assert_allclose(p1.sum(axis=1), 1.0, rtol=1e-6)
    assert p2[0].max() < p1[0].max()
    assert p1[1].argmax() == 2


def test_out_of_scope_score_is_half_at_threshold_and_falls_with_confidence() -> None:
    """Less confident in every intent -> more out of scope."""
    confidence = np.array([0.2, 0.6, 0.9], dtype=np.float32)
    scores = scoring.out_of_scope_score(confidence, threshold=0.6)
    assert scores[1] == pytest.approx(0.5)
    assert scores[0] > 0.95 and scores[2] < 0.05


def test_top_k_orders_best_first_and_clips_k() -> None:
    """top_k returns indices of the highest scores in order, never more than there are."""
    scores = np.array([0.1, 0.9, 0.5, 0.7], dtype=np.float32)
    assert scoring.top_k(scores, 2).tolist() == [1, 3]
    assert scoring.top_k(scores, 10).tolist() == [1, 3, 2, 0]
    assert scoring.top_k(scores, 0).tolist() == []
