"""Retrieved agent replies -> candidates scored as probabilities, pure numpy.

A hit is an indexed moment of a past chat: the context there and the reply the agent gave.
Its score mixes how close that context is to the present one (the retrieval evidence) with
how well the reply itself fits the present context (the ranker's cosine, with reply
embeddings computed at index time), and a logistic curve fitted on held-out conversations
turns the mix into the probability that the reply is right: the same scale as the intent
probabilities, so the engine can weigh both and fall back to clarify or escalate below one
threshold. Replies of one near-duplicate group count once, with their best score; a reply
with unfilled ``{{placeholders}}`` (template data sets have them) is never offered.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from retrieval.index import DialogueIndex, Hit, asked_in

Array = npt.NDArray[np.float32]
Item = TypeVar("Item")

UNFILLED = re.compile(r"\{\{[^{}]*\}\}")


@dataclass(frozen=True)
class ReplyCalibration:
    """fused = weight * context similarity + (1 - weight) * reply similarity;
    probability = sigmoid(slope * fused + intercept)."""

    weight: float = 0.5
    slope: float = 12.0
    intercept: float = -9.0
    """Defaults (used when there was nothing to fit on): 0.5 at fused 0.75."""
    fitted_on: int = 0
    """Held-out cases the curve was fitted on (0: defaults)."""
    threshold: float | None = None
    """The probability from which a past reply is worth sending, fitted on the same cases
    (None: not fitted; the bot's ``thresholds.retrieval`` or its default applies)."""

    def fused(self, context_similarity: Array, reply_similarity: Array) -> Array:
        out: Array = (
            self.weight * context_similarity + (1.0 - self.weight) * reply_similarity
        ).astype(np.float32)
        return out

    def probability(self, fused: Array) -> Array:
        out: Array = (1.0 / (1.0 + np.exp(-(self.slope * fused + self.intercept)))).astype(
            np.float32
        )
        return out

    def to_json(self) -> dict[str, float | int | None]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> ReplyCalibration:
        if not data:
            return cls()
        return cls(
            weight=float(data["weight"]),
            slope=float(data["slope"]),
            intercept=float(data["intercept"]),
            fitted_on=int(data.get("fitted_on", 0)),
            threshold=None if data.get("threshold") is None else float(data["threshold"]),
        )


@dataclass(frozen=True)
class RankedReply:
    text: str
    score: float
    """Probability that the reply is right."""
    conversation_id: str
    group: int
    question: str = ""
    """What the customer asked there (the newest customer turn of its context)."""


def rank_hits(
    query: Array, hits: Sequence[Hit], calibration: ReplyCalibration, k: int
) -> list[RankedReply]:
    """The ``k`` best distinct replies among ``hits`` for the (D,) ``query``, best first."""
    usable = [h for h in hits if not _unfilled(h.item.reply)]
    if not usable:
        return []
    context = np.asarray([h.similarity for h in usable], dtype=np.float32)
    reply = np.stack([h.reply_embedding for h in usable]) @ query  # (K,)
    scores = calibration.probability(calibration.fused(context, reply))
    scored = zip(usable, scores.tolist(), strict=True)
    best = _distinct(((h.item.reply, h.item.group, score, h) for h, score in scored), k)
    return [
        RankedReply(
            hit.item.reply,
            score,
            hit.item.conversation_id,
            key,
            hit.item.question or asked_in(hit.item.context),
        )
        for key, score, hit in best
    ]


def _distinct(
    scored: Iterable[tuple[str, int, float, Item]], k: int
) -> list[tuple[int, float, Item]]:
    """The ``k`` best of ``(reply, group, score, item)``, one per near-duplicate group
    (its best; the first of equals), best first, groups tied in the order they first
    appear: ``(key, score, item)``. Group -1 (none) must not merge unrelated replies: those
    are keyed by their text."""
    best: dict[int, tuple[float, Item]] = {}
    for reply, group, score, item in scored:
        key = group if group >= 0 else hash(reply)
        if key not in best or score > best[key][0]:
            best[key] = (score, item)
    top = sorted(best.items(), key=lambda entry: -entry[1][0])[:k]
    return [(key, score, item) for key, (score, item) in top]


def rank_rows(
    queries: Array,
    sims: Array,
    rows: npt.NDArray[np.int64],
    index: DialogueIndex,
    calibration: ReplyCalibration,
    k: int,
) -> list[list[RankedReply]]:
    """:func:`rank_hits` for a batch, on :meth:`DialogueIndex.search_rows`' arrays: the
    reply cosines and scores of all (B, K) hits in a few array operations, then a short
    loop per query over its hits. The same replies, scores and order as ``rank_hits`` on
    ``index.search`` (to float rounding; ties too); the serving path."""
    if k <= 0 or rows.shape[1] == 0:
        return [[] for _ in range(len(rows))]
    found = rows >= 0
    embeddings, groups = index.replies(np.where(found, rows, 0))
    # a missing hit (FAISS: similarity -FLT_MAX) is scored as 0 and 0, then skipped
    reply = np.where(found, np.einsum("bkd,bd->bk", embeddings, queries), 0).astype(np.float32)
    context = np.where(found, sims, 0).astype(np.float32)
    scores = calibration.probability(calibration.fused(context, reply))
    ranked: list[list[RankedReply]] = []
    for row_ids, row_groups, row_scores in zip(
        rows.tolist(), groups.tolist(), scores.tolist(), strict=True
    ):
        usable = (
            (text, group, score, row)
            for row, group, score in zip(row_ids, row_groups, row_scores, strict=True)
            if row >= 0 and not _unfilled(text := index.reply_text(row))
        )
        ranked.append(
            [
                RankedReply(
                    index.reply_text(row),
                    score,
                    index.conversation_of(row),
                    key,
                    index.question_text(row),
                )
                for key, score, row in _distinct(usable, k)
            ]
        )
    return ranked


@functools.lru_cache(maxsize=65_536)
def _unfilled(reply: str) -> bool:
    return UNFILLED.search(reply) is not None


SAME_REPLY = 0.9
"""Reply-embedding cosine at or above which a candidate counts as a retrieved reply."""


def score_candidates(
    query: Array, candidates: Array, hits: Sequence[Hit], calibration: ReplyCalibration
) -> Array:
    """Probabilities for any candidate replies (M, D) given the (D,) query and its hits.

    A candidate's context evidence is the best context similarity among the hits whose
    reply is the same answer (reply cosine >= :data:`SAME_REPLY`), 0 when none is; for a
    retrieved reply itself this is its own hit's similarity, as in :func:`rank_hits`.
    """
    reply = candidates @ query  # (M,)
    support = np.zeros(len(candidates), dtype=np.float32)
    if hits:
        stored = np.stack([h.reply_embedding for h in hits])  # (K, D)
        context = np.asarray([h.similarity for h in hits], dtype=np.float32)  # (K,)
        same = (candidates @ stored.T) >= SAME_REPLY  # (M, K)
        support = np.where(same, context[None, :], 0.0).max(axis=1).astype(np.float32)
    return calibration.probability(calibration.fused(support, reply))
