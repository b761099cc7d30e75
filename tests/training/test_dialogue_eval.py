"""The 1-of-100 ranking protocol of `frontdesk dialogues eval`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from retrieval.chatlog import ChatLog, ChatTurn, TurnRole
from retrieval.index import DialogueIndex, IndexedTurn
from retrieval.ranking import ReplyCalibration
from training.dialogue_eval import (
    ranking_cases,
    ranking_metrics,
    ranks,
    score_cases,
    score_cases_with_index,
)
from training.errors import TrainingError

C, A = TurnRole.CUSTOMER, TurnRole.AGENT


def conversation(i: int) -> ChatLog:
    turns = [
        ChatTurn(A, "Hello, how can I help?"),  # no customer turn before it: no case
        ChatTurn(C, f"question {i}"),
        ChatTurn(A, f"answer {i}"),
        ChatTurn(C, "thanks"),
        ChatTurn(A, "Thank you and goodbye."),  # the same text in every conversation
    ]
    return ChatLog(f"c{i}", "web", None, tuple(turns))


def test_cases_draw_other_conversations_replies_never_the_true_text() -> None:
    logs = [conversation(i) for i in range(60)]
    cases = ranking_cases(logs)
    assert len(cases) == 120  # two agent turns after a customer turn, per conversation
    first = cases[0]
    assert first.context == "customer: question 0 [SEP] agent: Hello, how can I help?"
    assert first.candidates[0] == "answer 0"
    assert len(first.candidates) == 100
    drawn = first.candidates[1:]
    assert "answer 0" not in drawn  # own conversation's turns are never drawn
    goodbye = cases[1]
    assert goodbye.candidates[0] == "Thank you and goodbye."
    assert "Thank you and goodbye." not in goodbye.candidates[1:]
    assert ranking_cases(logs) == cases  # seed 0: the same draw every time
    assert ranking_cases(logs, seed=1) != cases


def test_fewer_candidates_when_the_pool_is_small_and_an_error_when_empty() -> None:
    cases = ranking_cases([conversation(i) for i in range(3)])
    # the two other conversations hold six agent turns: all are drawn for "answer i",
    # all but the two goodbyes for "Thank you and goodbye."
    assert [len(c.candidates) for c in cases] == [7, 5] * 3
    with pytest.raises(TrainingError, match="no test cases"):
        ranking_cases([conversation(0)])


def test_ranks_count_ties_against_the_true_reply_and_metrics() -> None:
    scores = [
        np.array([0.9, 0.1, 0.2], dtype=np.float32),  # rank 1
        np.array([0.5, 0.5, 0.1], dtype=np.float32),  # tie: rank 2
        np.array([0.1] + [0.2] * 10, dtype=np.float32),  # rank 11
    ]
    r = ranks(scores)
    assert r.tolist() == [1, 2, 11]
    assert ranking_metrics(r) == {
        "n": 3,
        "recall@1": round(1 / 3, 4),
        "recall@5": round(2 / 3, 4),
        "recall@10": round(2 / 3, 4),
        "mrr": round((1 + 1 / 2 + 1 / 11) / 3, 4),
    }


def test_score_cases_encodes_each_text_once_and_scores_by_cosine() -> None:
    logs = [conversation(i) for i in range(5)]
    cases = ranking_cases(logs)
    seen: list[str] = []

    def encode(texts: list[str]) -> np.ndarray:
        seen.extend(texts)
        # the context of question i points at "answer i"; everything else is orthogonal
        out = np.zeros((len(texts), 8), dtype=np.float32)
        for row, text in enumerate(texts):
            digits = [ch for ch in text if ch.isdigit()]
            out[row, int(digits[0]) if digits else 7] = 1.0
        return out

    scores = score_cases(cases, encode)
    assert len(seen) == len(set(seen))
    assert ranks(scores)[::2].tolist() == [1] * 5


def test_indexed_scoring_lets_past_moments_vouch_for_a_candidate() -> None:
    """A candidate far from the context in embedding space still wins when the nearest past
    moment (in the index) was answered with that very reply: the served scoring."""
    logs = [conversation(i) for i in range(3)]
    cases = [c for c in ranking_cases(logs) if c.candidates[0] == "answer 0"]
    assert len(cases) == 1

    def encode(texts: Sequence[str]) -> np.ndarray:
        # "answer 0" points away from its context; "answer 1" a little towards it
        out = np.zeros((len(texts), 4), dtype=np.float32)
        for row, text in enumerate(texts):
            if text.startswith("customer: question 0"):
                out[row] = [1, 0, 0, 0]
            elif text == "answer 0":
                out[row] = [0.1, 0, 0.995, 0]
            elif text == "answer 1":
                out[row] = [0.6, 0.8, 0, 0]
            else:
                out[row] = [0, 0, 0, 1]
        return out

    plain = score_cases(cases, encode)
    assert ranks(plain).tolist() == [2]  # on cosine alone, "answer 1" wins
    index = DialogueIndex(4, kind="flat")
    past = IndexedTurn("old", 1, "customer: question 0 again", "answer 0")
    context, reply = np.eye(4, dtype=np.float32)[[0]], np.eye(4, dtype=np.float32)[[2]]
    index.add([past], context, reply)
    calibration = ReplyCalibration(weight=0.75, slope=12, intercept=-9, fitted_on=0)
    served = score_cases_with_index(cases, encode, index, calibration, depth=5)
    assert ranks(served).tolist() == [1]
    empty = score_cases_with_index(cases, encode, DialogueIndex(4, kind="flat"), calibration, 5)
    assert ranks(empty).tolist() == [2]  # nothing in the index: cosine decides


def test_contexts_may_stay_as_written_while_the_replies_are_redacted() -> None:
    """`dialogues eval` reads the contexts as the server reads a customer's messages (as
    written) and redacts the replies, as the bundle's index holds them."""

    def redact(text: str) -> str:
        return text.replace("secret", "[X]")

    logs = [
        ChatLog(
            f"c{i}",
            "web",
            None,
            (ChatTurn(C, f"question {i} secret"), ChatTurn(A, f"answer {i} secret")),
        )
        for i in range(3)
    ]
    both = ranking_cases(logs, redact=redact)
    served = ranking_cases(logs, redact=redact, redact_contexts=False)
    assert [c.context for c in both] == [f"customer: question {i} [X]" for i in range(3)]
    assert [c.context for c in served] == [f"customer: question {i} secret" for i in range(3)]
    assert [c.candidates for c in served] == [c.candidates for c in both]  # the same draw
    assert served[0].candidates[0] == "answer 0 [X]"
