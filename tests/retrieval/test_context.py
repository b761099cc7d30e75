"""Context windows as query vectors: joint vs fused, and the serving path that encodes only
the new message of a fused window."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from retrieval.bundle import Bundle
from retrieval.chatlog import TurnRole
from retrieval.context import (
    JOINT_TOKENS,
    ContextEncoding,
    TurnCache,
    fuse,
    window_turns,
)
from retrieval.index import DialogueIndex, IndexedTurn
from retrieval.intent_head import IntentHead
from retrieval.pairs import context_text, message_window

DIM = 16
C, A = TurnRole.CUSTOMER, TurnRole.AGENT


class HashEncoder:
    """A unit vector per text, fixed by its hash; records every call."""

    dim = DIM

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], int | None]] = []

    def encode(
        self, texts: Sequence[str], batch_size: int = 64, max_tokens: int | None = None
    ) -> npt.NDArray[np.float32]:
        self.calls.append((list(texts), max_tokens))
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        for i, text in enumerate(texts):
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")
            vector = np.random.default_rng(seed).standard_normal(DIM)
            out[i] = vector / np.linalg.norm(vector)
        return out

    @property
    def encoded(self) -> list[str]:
        return [t for texts, _ in self.calls for t in texts]


def test_window_turns_undo_context_text() -> None:
    """The turns of a window come back most recent first: the customer's as written (the
    message's own text), an agent's tagged with its role."""
    window = context_text([(C, "where is my parcel"), (A, "customer: it ships today"), (C, "ok")])
    assert window_turns(window) == ["ok", "agent: customer: it ships today", "where is my parcel"]
    assert window_turns(message_window([], "hi")) == ["hi"]


def test_a_serving_window_leaves_the_bots_turns_out() -> None:
    """What the bot said (answers, hand-over and queue notices) is no context: the window
    holds the customer's and the agents' turns, as the pairs it was trained on do."""
    history = [
        ("customer", "do you ship to the US?"),
        ("bot", "I'll pass you to one of my colleagues."),
        ("bot", "You are number 1 in the queue."),
        ("customer", "hello?"),
    ]
    window = message_window(history, "anyone there?")
    assert window_turns(window) == ["anyone there?", "hello?", "do you ship to the US?"]


def test_fuse_is_the_normalised_weighted_sum_of_the_newest_turns() -> None:
    """Weights apply most recent first; turns beyond them are dropped."""
    e = np.eye(4, dtype=np.float32)
    fused = fuse([e[0], e[1], e[2], e[3]], (1.0, 0.5))
    assert np.allclose(fused, np.array([1.0, 0.5, 0, 0]) / np.linalg.norm([1.0, 0.5]))


def test_joint_windows_are_one_sequence_cut_at_serving_time() -> None:
    """Joint: the window's text is encoded whole; at serving time cut to JOINT_TOKENS."""
    encoder = HashEncoder()
    windows = [context_text([(C, "a"), (A, "b")])]
    built = ContextEncoding("joint").encode(encoder.encode, windows)
    served = ContextEncoding("joint").encode(encoder.encode, windows, serving=True)
    assert encoder.calls == [(windows, None), (windows, JOINT_TOKENS)]
    assert np.allclose(built, encoder.encode(windows))
    assert np.allclose(served, built)


def test_fused_windows_encode_each_distinct_turn_once() -> None:
    """Fused: turns shared by windows are encoded once, and each window is the fusion of
    its turns' embeddings."""
    encoder = HashEncoder()
    windows = [
        context_text([(C, "hello"), (A, "how can I help?"), (C, "my parcel")]),
        context_text([(A, "how can I help?"), (C, "a refund")]),
    ]
    encoding = ContextEncoding("fused")
    got = encoding.encode(encoder.encode, windows)
    assert sorted(encoder.encoded) == ["a refund", "agent: how can I help?", "hello", "my parcel"]
    e = dict(zip(encoder.encoded, encoder.encode(encoder.encoded), strict=True))
    helping = e["agent: how can I help?"]
    assert np.allclose(got[0], fuse([e["my parcel"], helping, e["hello"]], (1, 0.5, 0.25)))
    assert np.allclose(got[1], fuse([e["a refund"], helping], (1, 0.5, 0.25)))
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0)


@pytest.mark.parametrize(
    ("mode", "weights"),
    [("late", (1.0,)), ("fused", ()), ("fused", (0.0, 1.0)), ("fused", (1.0, -0.5))],
)
def test_bad_encodings_are_refused(mode: str, weights: tuple[float, ...]) -> None:
    """An unknown mode or unusable weights are an error naming what was given."""
    with pytest.raises(ValueError, match=r"context encoding|weights"):
        ContextEncoding(mode, weights)  # type: ignore[arg-type]


def test_encoding_round_trips_and_old_bundles_read_joint() -> None:
    """The manifest entry reads back; a manifest without one (older bundles) is joint."""
    encoding = ContextEncoding("fused", (1.0, 0.3))
    assert ContextEncoding.from_json(encoding.to_json()) == encoding
    assert ContextEncoding.from_json(None) == ContextEncoding("joint")


def test_turn_cache_keeps_the_newest_entries() -> None:
    """Over capacity the oldest entries go; a re-put text counts as new."""
    cache = TurnCache(capacity=2)
    vectors = np.eye(3, dtype=np.float32)
    cache.put_many(["a", "b"], vectors[:2])
    cache.put_many(["a"], vectors[:1])  # "a" is now the newest
    cache.put_many(["c"], vectors[2:])
    found = cache.get_many(["a", "b", "c"])
    assert found[1] is None and len(cache) == 2
    assert np.array_equal(found[0], vectors[0]) and np.array_equal(found[2], vectors[2])
    assert (cache.hits, cache.misses) == (2, 1)


def make_bundle(encoding: ContextEncoding, encoder: HashEncoder) -> Bundle:
    pairs = [
        IndexedTurn("c1", 1, context_text([(C, "my parcel never came")]), "I'll resend it.", 0),
        IndexedTurn("c2", 1, context_text([(C, "refund please")]), "Refund is on its way.", 1),
    ]
    index = DialogueIndex(DIM, kind="flat")
    contexts = encoding.encode(encoder.encode, [p.context for p in pairs])
    index.add(pairs, contexts, encoder.encode([p.reply for p in pairs]))
    head = IntentHead(
        labels=("greet", "refund"),
        weight=encoder.encode(["hi", "refund please"]) * 20,  # (C, D)
        bias=np.zeros(2, dtype=np.float32),
        temperature=1.0,
        threshold=0.0,
    )
    manifest = {"format": 2, "context_encoding": encoding.to_json()}
    encoder.calls.clear()
    return Bundle(Path("v0001"), manifest, encoder, head, index)


def test_a_fused_bundle_serves_the_windows_it_indexed_encoding_only_new_text() -> None:
    """Serving a fused window gives the query that indexing gives the same window, and a
    conversation's next message encodes only that message: the turns before it are cached."""
    encoder = HashEncoder()
    encoding = ContextEncoding("fused")
    bundle = make_bundle(encoding, encoder)
    history: list[tuple[str, str]] = [("customer", "hi"), ("agent", "Hello! How can I help?")]
    first = message_window(history, "my parcel never came")
    (analysis,) = bundle.analyze(["my parcel never came"], [first])
    assert sorted(encoder.encoded) == [
        "agent: Hello! How can I help?",
        "hi",
        "my parcel never came",
    ]
    assert analysis.replies[0].text == "I'll resend it."

    encoder.calls.clear()
    history += [("customer", "my parcel never came"), ("agent", "Sorry! Your order number?")]
    second = message_window(history, "it is 1234")
    bundle.analyze(["it is 1234"], [second])
    assert encoder.encoded == ["it is 1234", "agent: Sorry! Your order number?"]  # one pass
    assert len(encoder.calls) == 1

    # what the server queries with is what indexing makes of the same window
    messages, queries = bundle._encode_fused(["it is 1234"], [second])
    assert np.allclose(queries[0], encoding.encode(HashEncoder().encode, [second])[0])
    assert np.allclose(messages[0], HashEncoder().encode(["it is 1234"])[0])


def test_a_joint_bundle_encodes_the_message_and_its_window() -> None:
    """Joint bundles (the default, and every bundle written before there was a choice)
    encode the message, then its whole window cut to JOINT_TOKENS."""
    encoder = HashEncoder()
    bundle = make_bundle(ContextEncoding(), encoder)
    window = message_window([("customer", "hi"), ("agent", "Hello!")], "refund please")
    (analysis,) = bundle.analyze(["refund please"], [window])
    assert encoder.calls == [(["refund please"], None), ([window], JOINT_TOKENS)]
    assert analysis.intents[0][0] == "refund"
