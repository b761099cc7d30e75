"""The reply calibration is fitted on held-out conversations and means what it says."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from retrieval.index import DialogueIndex, IndexedTurn
from retrieval.ranking import ReplyCalibration, rank_hits
from training.reply_calibration import fit_reply_calibration

DIM = 16


class TableEncoder:
    """Looks the vector of each text up in a table."""

    dim = DIM

    def __init__(self, table: dict[str, np.ndarray]) -> None:
        self.table = table

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        return np.stack([self.table[t] for t in texts]).astype(np.float32)


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def test_fitted_probabilities_rise_with_the_score_and_match_the_hit_rate() -> None:
    rng = np.random.default_rng(0)
    topics = [unit(rng.normal(size=DIM)) for _ in range(6)]
    table: dict[str, np.ndarray] = {}
    pairs: list[IndexedTurn] = []
    for i in range(240):
        topic = i % 6
        noise = 0.3 if i % 3 else 1.6  # every third context is vague
        context = f"context {i}"
        table[context] = unit(topics[topic] + noise * rng.normal(size=DIM) / np.sqrt(DIM) * 3)
        table[f"reply {topic}"] = topics[topic]
        pairs.append(IndexedTurn(f"conv-{i}", 1, context, f"reply {topic}", topic))
    encoder = TableEncoder(table)
    index = DialogueIndex(DIM)
    index.add(
        pairs,
        encoder.encode([p.context for p in pairs]),
        encoder.encode([p.reply for p in pairs]),
    )
    held_out = {f"conv-{i}" for i in range(0, 240, 2)}
    calibration = fit_reply_calibration(encoder, index, pairs, held_out)
    assert calibration.fitted_on == 120
    assert calibration.slope > 0
    # on the held-out cases, the mean predicted probability is close to the hit rate
    predicted, right = [], []
    for p in pairs:
        if p.conversation_id not in held_out:
            continue
        query = encoder.encode([p.context])[0]
        hits = [
            h
            for h in index.search(query[None], 40)[0]
            if h.item.conversation_id != p.conversation_id
        ]
        top = rank_hits(query, hits, calibration, 1)[0]
        predicted.append(top.score)
        right.append(top.group == p.group)
    assert 0.05 < np.mean(right) < 0.95  # both outcomes occur
    assert abs(np.mean(predicted) - np.mean(right)) < 0.05


def test_too_few_held_out_cases_keep_the_defaults() -> None:
    encoder = TableEncoder({"c": unit(np.ones(DIM)), "r": unit(np.ones(DIM))})
    index = DialogueIndex(DIM)
    pairs = [IndexedTurn("a", 1, "c", "r", 0)]
    index.add(pairs, encoder.encode(["c"]), encoder.encode(["r"]))
    assert fit_reply_calibration(encoder, index, pairs, {"a"}) == ReplyCalibration()


def test_a_bots_own_examples_fit_the_calibration_without_past_chats() -> None:
    """A small bot (no held-out conversations) is fitted on its examples: two wordings of
    one intent are one question; scores rise with the fit and a threshold is chosen."""
    from training.reply_calibration import Paraphrases

    rng = np.random.default_rng(1)
    topics = [unit(rng.normal(size=DIM)) for _ in range(8)]
    table: dict[str, np.ndarray] = {}
    texts, labels = [], []
    for t, topic in enumerate(topics):
        table[f"answer {t}"] = topic
        for i in range(12):
            text = f"example {t}.{i}"
            table[text] = unit(topic + rng.normal(size=DIM) * 0.25)
            texts.append(text)
            labels.append(f"intent{t}")
    answers = {f"intent{t}": f"answer {t}" for t in range(8)}
    encoder = TableEncoder(table)
    calibration = fit_reply_calibration(
        encoder, DialogueIndex(DIM), [], set(), paraphrases=Paraphrases(texts, labels, answers)
    )
    assert calibration.fitted_on == 96
    assert calibration.slope > 0
    assert calibration.threshold is not None and 0.3 <= calibration.threshold <= 0.9
    assert calibration != ReplyCalibration()
