"""Confidence that means something: temperature scaling, calibration error, and the
out-of-scope threshold. Pure numpy/scipy over logits; no model runs here.

Shapes: rows N, classes C.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize_scalar

from retrieval import scoring

Array = npt.NDArray[np.float32]
Labels = npt.NDArray[np.int64]


def fit_temperature(logits: Array, labels: Labels) -> float:
    """Temperature T minimising the negative log-likelihood of softmax(logits / T).

    logits (N, C), labels (N,) -> T in [0.3, 20]. The lower bound keeps a small,
    perfectly separated validation set from driving T to 0 (every probability 1).
    """
    if logits.shape[0] == 0:
        return 1.0
    z = logits.astype(np.float64)

    def nll(log_t: float) -> float:
        scaled = z / np.exp(log_t)
        scaled -= scaled.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(scaled).sum(axis=1))
        return float((log_norm - scaled[np.arange(len(labels)), labels]).mean())

    result = minimize_scalar(nll, bounds=(np.log(0.3), np.log(20.0)), method="bounded")
    return float(np.exp(result.x))


@dataclass(frozen=True)
class ReliabilityBins:
    edges: npt.NDArray[np.float64]  # (B + 1,)
    confidence: npt.NDArray[np.float64]  # (B,) mean confidence per bin (nan when empty)
    accuracy: npt.NDArray[np.float64]  # (B,)
    counts: npt.NDArray[np.int64]  # (B,)


def reliability(
    confidence: Array, correct: npt.NDArray[np.bool_], bins: int = 15
) -> ReliabilityBins:
    """Equal-width confidence bins. confidence (N,), correct (N,)."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    counts = np.bincount(which, minlength=bins).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.bincount(which, weights=confidence, minlength=bins) / counts
        acc = np.bincount(which, weights=correct.astype(np.float64), minlength=bins) / counts
    return ReliabilityBins(edges, conf, acc, counts)


def expected_calibration_error(
    confidence: Array, correct: npt.NDArray[np.bool_], bins: int = 15
) -> float:
    """Sum over bins of |accuracy - confidence| weighted by the bin's share of rows."""
    if confidence.shape[0] == 0:
        return 0.0
    rel = reliability(confidence, correct, bins)
    used = rel.counts > 0
    gaps = np.abs(rel.accuracy[used] - rel.confidence[used]) * rel.counts[used]
    return float(gaps.sum() / rel.counts.sum())


def held_out_confidence(logits: Array, labels: Labels, temperature: float) -> Array:
    """Pseudo out-of-scope confidences with no out-of-scope data: for each in-scope row,
    the highest probability the model gives when its own intent is removed, i.e. what it
    would say if this intent did not exist. logits (N, C), labels (N,) -> (N,)."""
    masked = logits.astype(np.float32).copy()
    masked[np.arange(len(labels)), labels] = -np.inf
    out: Array = scoring.softmax(masked, temperature).max(axis=1)
    return out


def choose_threshold(
    in_scope_confidence: Array,
    in_scope_correct: npt.NDArray[np.bool_],
    oos_confidence: Array,
    max_lost: float = 1.0,
    floor: float = 0.0,
) -> float:
    """Confidence below which a message is rejected as out of scope.

    Maximises balanced accuracy on validation rows: the share of in-scope rows predicted
    right and kept, plus the share of out-of-scope rows rejected; the threshold is put
    halfway between the two validation confidences where that split happens.
    ``max_lost`` caps the share of in-scope rows that are predicted right but rejected.
    ``floor`` is the lowest confidence possible (1 / number of intents).
    """
    if oos_confidence.shape[0] == 0 or in_scope_confidence.shape[0] == 0:
        return 0.0
    candidates = np.unique(np.concatenate([in_scope_confidence, oos_confidence]))
    kept_right = np.sort(in_scope_confidence[in_scope_correct])
    oos_sorted = np.sort(oos_confidence)
    # rows with confidence >= t are kept: count of kept right answers and rejected oos
    kept = len(kept_right) - np.searchsorted(kept_right, candidates, side="left")
    rejected = np.searchsorted(oos_sorted, candidates, side="left")
    score = kept / len(in_scope_confidence) + rejected / len(oos_confidence)
    lost = (len(kept_right) - kept) / len(in_scope_confidence)
    score = np.where(lost <= max_lost + 1e-12, score, -np.inf)
    # among equally good thresholds the highest: it also rejects more wrong answers
    best = len(score) - 1 - int(np.argmax(score[::-1]))
    # halfway to the next lower confidence: the same split of validation rows, with margin
    lower = candidates[best - 1] if best > 0 else floor
    return float((candidates[best] + lower) / 2)


def choose_min_similarity(
    similarity: Array, correct: npt.NDArray[np.bool_], share: float, max_lost: float = 1.0
) -> float:
    """Cosine to the nearest intent below which a message is out of scope, from in-scope
    validation rows: under it fall ``share`` of the rows, and no more than ``max_lost`` of
    the right answers (the threshold's cap). Like the threshold, it sits halfway to the
    next lower row, so rows at the cut stay in scope. similarity, correct (N,), N > 0."""
    cut = float(np.quantile(similarity, share))
    right = similarity[correct]
    if max_lost < share and right.size:
        cut = min(cut, float(np.quantile(right, max_lost)))
    below = similarity[similarity < cut]
    return (cut + (float(below.max()) if below.size else cut - 0.05)) / 2
