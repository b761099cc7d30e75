"""Pure math over arrays: probabilities, out-of-scope scores, top-k.

No model runs here; ``retrieval/encoder.py`` produces the embeddings these functions take.
Shapes are written as (batch B, dim D, intents C, examples E, hits K).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float32]


def normalize(x: Array) -> Array:
    """Row-wise L2 normalisation. (B, D) -> (B, D)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    out: Array = (x / np.maximum(norms, 1e-12)).astype(np.float32)
    return out


def softmax(logits: Array, temperature: float = 1.0) -> Array:
    """(B, C) -> (B, C), rows sum to 1."""
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    out: Array = (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
    return out


def out_of_scope_score(confidence: Array, threshold: float, sharpness: float = 20.0) -> Array:
    """Map the highest in-scope probability to an out-of-scope score in (0, 1).

    ``threshold`` is the confidence at which the score is 0.5; less confident -> higher score.
    (B,) -> (B,)
    """
    exponent = np.clip(-sharpness * (threshold - confidence), -60.0, 60.0)  # no overflow
    out: Array = (1.0 / (1.0 + np.exp(exponent))).astype(np.float32)
    return out


def top_k(scores: Array, k: int) -> npt.NDArray[np.int64]:
    """Indices of the k highest scores, best first. (N,) -> (min(k, N),)"""
    k = min(k, scores.shape[0])
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    part = np.argpartition(-scores, k - 1)[:k]
    return part[np.argsort(-scores[part], kind="stable")].astype(np.int64)
