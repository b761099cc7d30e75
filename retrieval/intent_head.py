"""The intent head of a bundle: a cosine classifier over encoder embeddings, its calibration
temperature, and its out-of-scope threshold. Pure numpy at serving time.

Classes may include an out-of-scope class (trained from rows labelled ``oos``); it is never
reported as an intent, but the probability it takes lowers every in-scope probability.

Out of scope is either of two signals: the in-scope confidence below ``threshold`` (what
tells a near miss, another banking question, from a known intent), or the message's cosine
to the nearest in-scope class direction below ``min_similarity`` (what tells text unlike
anything trained on, which a softmax can still be confident about).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import numpy.typing as npt

from retrieval import scoring

Array = npt.NDArray[np.float32]


@dataclass(frozen=True)
class IntentHead:
    labels: tuple[str, ...]
    """Every trained class, the out-of-scope class included when there is one."""
    weight: Array  # (C, D), rows scaled by the training logit scale
    bias: Array  # (C,)
    temperature: float
    """Calibration: probabilities are softmax(logits / temperature)."""
    threshold: float
    """In-scope confidence below which a message is out of scope (score 0.5 there)."""
    oos_label: str | None = None
    min_similarity: float = -1.0
    """Cosine to the nearest in-scope class direction below which a message is out of
    scope (score 0.5 there); -1: no such check (heads from before it, tiny validation)."""

    def __post_init__(self) -> None:
        if self.weight.shape[0] != len(self.labels) or self.bias.shape != (len(self.labels),):
            raise ValueError(
                f"intent head: {len(self.labels)} labels but weight {self.weight.shape} "
                f"and bias {self.bias.shape}"
            )
        if self.oos_label is not None and self.oos_label not in self.labels:
            raise ValueError(f"intent head: out-of-scope label {self.oos_label!r} not in labels")

    @cached_property
    def oos_class(self) -> int | None:
        return None if self.oos_label is None else self.labels.index(self.oos_label)

    @cached_property
    def intents(self) -> tuple[str, ...]:
        """In-scope intents, in the column order of :meth:`predict`."""
        return tuple(label for label in self.labels if label != self.oos_label)

    def in_scope(self, columns: Array) -> Array:
        """Drop the out-of-scope class's column from per-class values. (B, C) -> (B, C_in)"""
        if self.oos_class is None:
            return columns
        out: Array = np.delete(columns, self.oos_class, axis=1)
        return out

    def logits(self, embeddings: Array) -> Array:
        """(B, D) -> (B, C) uncalibrated."""
        out: Array = (embeddings @ self.weight.T + self.bias).astype(np.float32)
        return out

    @cached_property
    def _weight_norms(self) -> Array:
        out: Array = np.maximum(np.linalg.norm(self.weight, axis=1), 1e-12).astype(np.float32)
        return out

    def similarity(self, logits: Array) -> Array:
        """Cosine of each row's embedding to its nearest in-scope class direction, from the
        logits (B, C) it got (the classes' weight rows are scaled directions). -> (B,)"""
        cosines = (logits - self.bias) / self._weight_norms
        out: Array = self.in_scope(cosines).max(axis=1).astype(np.float32)
        return out

    def predict(self, embeddings: Array) -> tuple[Array, Array]:
        """(B, D) -> in-scope probabilities (B, C_in), out-of-scope scores (B,).

        In-scope probabilities are not renormalised: mass on the out-of-scope class stays
        missing from them.
        """
        if not self.intents:  # a bundle of past dialogues only: no intent is ever known
            return (
                np.zeros((embeddings.shape[0], 0), dtype=np.float32),
                np.ones(embeddings.shape[0], dtype=np.float32),
            )
        logits = self.logits(embeddings)
        probs = self.in_scope(scoring.softmax(logits, self.temperature))
        oos = scoring.out_of_scope_score(probs.max(axis=1), self.threshold)
        if self.min_similarity > -1.0:
            far = scoring.out_of_scope_score(self.similarity(logits), self.min_similarity)
            oos = np.maximum(oos, far)
        return probs, oos

    def save(self, path: Path) -> None:
        np.savez(
            path,
            labels=np.asarray(self.labels),
            weight=self.weight,
            bias=self.bias,
            meta=np.asarray(
                json.dumps(
                    {
                        "temperature": self.temperature,
                        "threshold": self.threshold,
                        "oos_label": self.oos_label,
                        "min_similarity": self.min_similarity,
                    }
                )
            ),
        )

    @classmethod
    def load(cls, path: Path) -> IntentHead:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            return cls(
                labels=tuple(str(x) for x in data["labels"]),
                weight=data["weight"].astype(np.float32),
                bias=data["bias"].astype(np.float32),
                temperature=float(meta["temperature"]),
                threshold=float(meta["threshold"]),
                oos_label=meta["oos_label"],
                min_similarity=float(meta.get("min_similarity", -1.0)),
            )
