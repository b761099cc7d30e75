"""The response ranker: group caps, hard negatives, held-out epoch choice."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from retrieval.chatlog import ChatLog, ChatTurn, TurnRole
from retrieval.encoder import Encoder, base_model_path
from retrieval.index import IndexedTurn
from training import objectives, ranker
from training.ranker import (
    RankerArguments,
    cap_groups,
    mine_hard_negatives,
    split_conversations,
    train_ranker,
)

TOPICS = [
    ("my parcel never arrived", "I'm sorry, I'll send a replacement today."),
    ("I was charged twice", "I've refunded the duplicate charge."),
    ("I can't log in", "I've sent you a password reset link."),
    ("how do I cancel my plan", "You can cancel under Settings > Plan."),
    ("do you ship to Canada", "Yes, we ship to Canada in 5 days."),
]


def shop_logs(n: int) -> list[ChatLog]:
    logs = []
    for i in range(n):
        question, answer = TOPICS[i % len(TOPICS)]
        turns = [
            (TurnRole.CUSTOMER, f"hi, {question} (ticket {i})"),
            (TurnRole.AGENT, answer),
            (TurnRole.CUSTOMER, "ok, and one more thing"),
            (TurnRole.AGENT, f"Sure, what else for ticket {i}?"),
        ]
        logs.append(ChatLog(f"c{i}", "web", None, tuple(ChatTurn(r, t) for r, t in turns)))
    return logs


def test_cap_groups_keeps_at_most_n_per_group_in_order() -> None:
    pairs = [IndexedTurn(f"c{i}", 1, f"q{i}", "a", i % 3) for i in range(30)]
    kept = cap_groups(pairs, 4, np.random.default_rng(0))
    assert len(kept) == 12
    assert [p.group for p in kept].count(0) == 4
    assert kept == sorted(kept, key=lambda p: int(p.conversation_id[1:]))


def test_hard_negatives_are_high_ranked_replies_of_other_groups() -> None:
    rng = np.random.default_rng(0)
    replies = np.eye(6, dtype=np.float32)  # reply r is axis r
    reply_groups = np.array([0, 0, 1, 2, 3, 4])
    # context 0 (group 0) is closest to replies 0, 1 (its own group) then 2, then 3
    context = np.array([[0.9, 0.8, 0.7, 0.6, 0.0, 0.0]], dtype=np.float32)
    hard = mine_hard_negatives(context, np.array([0]), replies, reply_groups, (0, 1), rng)
    assert hard.tolist() == [2]
    hard = mine_hard_negatives(context, np.array([0]), replies, reply_groups, (1, 2), rng)
    assert hard.tolist() == [3]
    none = mine_hard_negatives(context, np.array([0]), replies, reply_groups, (10, 20), rng)
    assert none.tolist() == [-1]


def test_validation_split_is_by_conversation_and_skipped_when_small() -> None:
    logs = shop_logs(40)
    train, valid = split_conversations(logs, 0.25, seed=3)
    assert len(valid) == 10 and len(train) == 30
    assert not {log.id for log in train} & {log.id for log in valid}
    assert split_conversations(logs[:10], 0.25, seed=3) == (logs[:10], [])


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="batch_size=1"):
        RankerArguments(batch_size=1)
    with pytest.raises(ValueError, match="hard_negative_ranks"):
        RankerArguments(hard_negative_ranks=(5, 5))
    with pytest.raises(ValueError, match="precision"):
        RankerArguments(precision="fp16")


@pytest.fixture(scope="module")
def base_state() -> Iterator[dict[str, torch.Tensor]]:
    yield {k: v.clone() for k, v in Encoder(base_model_path()).model.state_dict().items()}


@pytest.mark.parametrize("improves", [True, False])
def test_the_best_held_out_epoch_is_kept_and_the_base_when_none_beats_it(
    improves: bool, base_state: dict[str, torch.Tensor], monkeypatch: pytest.MonkeyPatch
) -> None:
    recalls = iter([0.5, 0.9] if improves else [0.5, 0.4])
    monkeypatch.setattr(
        ranker, "evaluate_encoder", lambda encoder, cases, context: {"recall@1": next(recalls)}
    )
    monkeypatch.setattr(ranker, "MIN_VALID_CASES", 20)  # small data, to keep the test fast
    monkeypatch.setattr(ranker, "MIN_TRAIN_PAIRS", 20)
    encoder = Encoder(base_model_path())
    args = RankerArguments(epochs=1, valid_fraction=0.25, batch_size=16)
    training = train_ranker(encoder, shop_logs(60), args, progress=False)
    assert [h.epoch for h in training.history] == [0, 1]
    assert training.history[1].loss is not None and training.history[1].loss > 0
    assert training.valid_conversations == 15
    assert training.train_pairs == 90
    state = encoder.model.state_dict()
    same = all(torch.equal(state[k], base_state[k]) for k in base_state)
    assert training.best_epoch == (1 if improves else 0)
    assert same is (not improves)


def test_too_few_pairs_keep_the_base_encoder_and_say_why(
    base_state: dict[str, torch.Tensor],
) -> None:
    encoder = Encoder(base_model_path())
    training = train_ranker(encoder, shop_logs(20), RankerArguments(), progress=False)
    assert training.best_epoch == 0 and training.history == ()
    assert training.note is not None and "too few" in training.note
    state = encoder.model.state_dict()
    assert all(torch.equal(state[k], base_state[k]) for k in base_state)


def test_fused_training_queries_are_the_served_fusion_of_turn_embeddings() -> None:
    """A fused window is trained as it is served: each turn embedded alone (an agent's
    tagged with its role), the weighted sum normalised; joint windows are one sequence."""
    from retrieval.context import ContextEncoding, fuse
    from retrieval.pairs import context_text

    encoder = Encoder(base_model_path())
    windows = [
        context_text([(TurnRole.CUSTOMER, "my parcel"), (TurnRole.AGENT, "which order?")]),
        context_text([(TurnRole.AGENT, "which order?"), (TurnRole.CUSTOMER, "order 12")]),
    ]
    fused = ContextEncoding("fused")
    with torch.no_grad():
        trained = objectives.embed_contexts(encoder, windows, fused).numpy()
        joint = objectives.embed_contexts(encoder, windows, ContextEncoding()).numpy()
    texts = ["my parcel", "agent: which order?", "order 12"]
    e = dict(zip(texts, encoder.encode(texts), strict=True))
    asked = e["agent: which order?"]
    assert np.allclose(trained[0], fuse([asked, e["my parcel"]], fused.weights), atol=1e-5)
    assert np.allclose(trained[1], fuse([e["order 12"], asked], fused.weights), atol=1e-5)
    assert np.allclose(joint, encoder.encode(windows), atol=1e-5)
