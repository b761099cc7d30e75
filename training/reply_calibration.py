"""Fit how retrieved replies are scored: the mix of context and reply similarity, and the
logistic curve that turns it into the probability that the best reply is right.

Fitted for every bot, small ones too, on two kinds of cases:

- **held-out conversations**: each (context -> reply) pair queries the index with its own
  conversation's turns left out (leave-one-conversation-out); the top candidate is right
  when it is the same answer (near-duplicate group) the agent gave;
- **the bot's own examples** (:class:`Paraphrases`): two examples of one intent are two
  wordings of one question. Each example queries a small index holding one other example
  of every intent, paired with that intent's response; for every other query its own
  intent is left out, so the index has no answer for it. This is what a past chat
  collection of a small shop looks like from a new customer's question: one earlier
  wording of each topic, or none.

A small bot's conversations are mostly one topic each, so on their own they say only when
an answer is wrong; its examples say when one is right.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
from sklearn.linear_model import LogisticRegression

from retrieval.bundle import TextEncoder
from retrieval.context import ContextEncoding
from retrieval.index import DialogueIndex, IndexedTurn
from retrieval.ranking import ReplyCalibration, rank_hits

log = logging.getLogger(__name__)

WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
MIN_CASES = 50
DEPTH = 20
MAX_CASES = 2_000
"""Cases of each kind at most (a random sample of them): enough for two parameters."""

Outcomes = tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]
"""(fused score of the top candidate, whether it was right) per case."""


@dataclass(frozen=True)
class Paraphrases:
    """A bot's intent examples and the answer each intent gives, as calibration cases."""

    texts: Sequence[str]
    labels: Sequence[str]
    answers: Mapping[str, str]
    """Intent -> the text it answers with; intents without one are never a candidate."""


def fit_reply_calibration(
    encoder: TextEncoder,
    index: DialogueIndex,
    pairs: Sequence[IndexedTurn],
    held_out: Collection[str],
    context: ContextEncoding | None = None,
    paraphrases: Paraphrases | None = None,
    seed: int = 13,
) -> ReplyCalibration:
    """The calibration fitted on the pairs of the ``held_out`` conversation ids and on the
    bot's ``paraphrases`` (defaults when together they give fewer than :data:`MIN_CASES`
    cases or only one outcome); windows are read as ``context`` says (joint by default)."""
    outcomes = calibration_cases(encoder, index, pairs, held_out, context, paraphrases, seed)
    if not outcomes or len(outcomes[WEIGHTS[0]][1]) < MIN_CASES:
        return ReplyCalibration()
    return fit_curve(outcomes, "reply calibration")


def fit_curve(outcomes: Mapping[float, Outcomes], what: str) -> ReplyCalibration:
    """The weight of :data:`WEIGHTS` whose cases' top candidate is right most often (the
    first of equals), the logistic curve of rightness on its fused scores (non-finite ones
    left out), and the threshold :func:`fit_threshold` picks on them; the defaults (with
    that weight) when fewer than :data:`MIN_CASES` cases or only one outcome remain.
    ``what`` names the curve in the log."""
    weight = max(WEIGHTS, key=lambda w: float(outcomes[w][1].mean()))
    x, y = outcomes[weight]
    keep = np.isfinite(x)
    x, y = x[keep], y[keep]
    if y.size < MIN_CASES or y.all() or not y.any():
        return ReplyCalibration(weight=weight)
    model = LogisticRegression(C=10.0).fit(x[:, None], y)
    calibration = ReplyCalibration(
        weight=weight,
        slope=float(model.coef_[0, 0]),
        intercept=float(model.intercept_[0]),
        fitted_on=int(y.size),
    )
    probabilities = calibration.probability(x.astype(np.float32))
    calibration = replace(calibration, threshold=fit_threshold(probabilities, y))
    log.info(
        "%s: weight %.2f, top candidate right on %.1f%% of %d cases, threshold %.2f",
        what,
        weight,
        100 * float(y.mean()),
        y.size,
        calibration.threshold,
    )
    return calibration


def calibration_cases(
    encoder: TextEncoder,
    index: DialogueIndex,
    pairs: Sequence[IndexedTurn],
    held_out: Collection[str],
    context: ContextEncoding | None = None,
    paraphrases: Paraphrases | None = None,
    seed: int = 13,
) -> dict[float, Outcomes]:
    """The cases :func:`fit_reply_calibration` fits on (the same ones for the same
    arguments): for each of :data:`WEIGHTS`, the fused score (``ReplyCalibration.fused``)
    of every case's top candidate and whether it was right; {} when there are none. The
    fitted calibration's ``probability`` of a score is that case's probability."""
    rng = np.random.default_rng(seed)
    sources = [
        _conversation_outcomes(encoder, index, pairs, held_out, context, rng),
        _paraphrase_outcomes(encoder, paraphrases, rng) if paraphrases else {},
    ]
    return {
        w: (
            np.concatenate([s[w][0] for s in sources if s]),
            np.concatenate([s[w][1] for s in sources if s]),
        )
        for w in WEIGHTS
        if any(sources)
    }


THRESHOLDS = tuple(np.round(np.arange(0.3, 0.91, 0.05), 2).tolist())


def fit_threshold(probabilities: npt.NDArray[np.float32], right: npt.NDArray[np.bool_]) -> float:
    """The cut from which a top reply is sent: on the cases, each right reply sent counts
    +1 and each wrong one -1 (a clarify question costs less than a wrong answer, and the
    customer can still be helped after it); the best of :data:`THRESHOLDS`, the highest of
    equals."""
    gain = np.where(right, 1.0, -1.0)
    totals = [float(gain[probabilities >= t].sum()) for t in THRESHOLDS]
    best = max(totals)
    return float(max(t for t, total in zip(THRESHOLDS, totals, strict=True) if total == best))


def _conversation_outcomes(
    encoder: TextEncoder,
    index: DialogueIndex,
    pairs: Sequence[IndexedTurn],
    held_out: Collection[str],
    context: ContextEncoding | None,
    rng: np.random.Generator,
) -> dict[float, Outcomes]:
    cases = [p for p in pairs if p.conversation_id in held_out]
    if len(cases) > MAX_CASES:
        keep = np.sort(rng.choice(len(cases), size=MAX_CASES, replace=False))
        cases = [cases[i] for i in keep]
    if not cases:
        return {}
    queries = (context or ContextEncoding()).encode(encoder.encode, [p.context for p in cases])
    hits = index.search(queries, DEPTH * 2)
    hits = [
        [h for h in row if h.item.conversation_id != case.conversation_id][:DEPTH]
        for row, case in zip(hits, cases, strict=True)
    ]
    outcomes: dict[float, Outcomes] = {}
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
        outcomes[weight] = (np.asarray(fused, dtype=np.float64), np.asarray(right, dtype=bool))
    return outcomes


def _paraphrase_outcomes(
    encoder: TextEncoder, paraphrases: Paraphrases, rng: np.random.Generator
) -> dict[float, Outcomes]:
    labels = np.asarray(paraphrases.labels, dtype=object)
    answered = sorted({str(label) for label in labels if label in paraphrases.answers})
    if len(answered) < 2 or len(labels) < 2:
        return {}
    examples = encoder.encode(list(paraphrases.texts)).astype(np.float64)  # (N, D)
    answers = encoder.encode([paraphrases.answers[a] for a in answered]).astype(np.float64)
    members = {a: np.flatnonzero(labels == a) for a in answered}
    order = rng.permutation(len(labels))[:MAX_CASES]
    context_sims, reply_sims, right = [], [], []
    for case, i in enumerate(order.tolist()):
        own = str(labels[i])
        answerable = case % 2 == 0  # every other question has no answer in the index
        cols, picks = [], []
        for column, intent in enumerate(answered):
            if intent == own and not answerable:
                continue
            others = members[intent][members[intent] != i]
            if others.size:
                cols.append(column)
                picks.append(int(rng.choice(others)))
        if len(cols) < 2:
            continue
        context_sims.append(examples[picks] @ examples[i])  # (J,)
        reply_sims.append(answers[cols] @ examples[i])  # (J,)
        right.append(np.asarray([answered[c] == own for c in cols]))
    outcomes: dict[float, Outcomes] = {}
    for weight in WEIGHTS:
        fused, hit = [], []
        for ctx, rep, ok in zip(context_sims, reply_sims, right, strict=True):
            scores = weight * ctx + (1.0 - weight) * rep
            top = int(np.argmax(scores))
            fused.append(float(scores[top]))
            hit.append(bool(ok[top]))
        outcomes[weight] = (np.asarray(fused), np.asarray(hit, dtype=bool))
    return outcomes
