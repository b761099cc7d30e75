"""The two training objectives of the one shared encoder, as batch losses any loop can add.

A bundle's encoder serves the intent head and the retrieval of past replies with one pass
per message, so it is fine-tuned on both: the loop of the larger task drives
(``training.intents`` for many intent rows, ``training.ranker`` for many chat-log pairs)
and takes one batch of the other objective with each of its steps
(:class:`Auxiliary`), cycling through that objective's data.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import torch

from retrieval import scoring
from retrieval.context import ContextEncoding, window_turns
from retrieval.encoder import Encoder
from retrieval.index import IndexedTurn

Batches = list[npt.NDArray[np.int64]]


class Auxiliary(Protocol):
    """A second objective taken one batch per step of another loop."""

    weight: float

    def parameters(self) -> list[torch.nn.Parameter]:
        """Parameters of its own (beyond the encoder's) that the optimizer must train."""
        ...

    def next_loss(self) -> torch.Tensor:
        """The loss of its next batch (cycling through its data), with gradients."""
        ...


def length_batches(
    lengths: npt.NDArray[np.int64], batch_size: int, rng: np.random.Generator
) -> Batches:
    """Shuffled batches of rows of similar length: shuffle, sort within chunks of 50
    batches by length, cut, shuffle the batches."""
    order = rng.permutation(len(lengths))
    chunk = batch_size * 50
    batches: Batches = []
    for start in range(0, len(order), chunk):
        part = order[start : start + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches.extend(part[i : i + batch_size] for i in range(0, len(part), batch_size))
    rng.shuffle(batches)
    return batches


def endless(
    lengths: npt.NDArray[np.int64], batch_size: int, rng: np.random.Generator
) -> Iterator[npt.NDArray[np.int64]]:
    """:func:`length_batches` epoch after epoch."""
    while True:
        yield from length_batches(lengths, batch_size, rng)


def embed_contexts(encoder: Encoder, contexts: Sequence[str], context: ContextEncoding) -> Any:
    """Training-time query embeddings (B, D), with gradients: a joint window as one
    sequence, a fused one as the weighted sum of its turns (each distinct turn once)."""
    if not context.fused:
        return encoder.embed(encoder.tokenize(contexts))
    windows = [window_turns(c)[: len(context.weights)] for c in contexts]
    distinct = sorted({t for turns in windows for t in turns})
    row = {text: i for i, text in enumerate(distinct)}
    turns = encoder.embed(encoder.tokenize(distinct))  # (T, D)
    mix = torch.zeros(len(contexts), len(distinct), device=turns.device, dtype=turns.dtype)
    for i, window in enumerate(windows):
        for weight, text in zip(context.weights, window, strict=False):
            mix[i, row[text]] += weight
    return torch.nn.functional.normalize(mix @ turns, dim=-1)  # (B, D)


class RankingObjective:
    """(context -> agent reply) pairs: softmax cross-entropy over the batch's replies
    (in-batch negatives) plus each pair's mined hard negative (a reply of another group,
    ``hard`` >= 0 indexes ``distinct``). Replies of one group are never each other's
    negatives."""

    def __init__(
        self,
        encoder: Encoder,
        pairs: Sequence[IndexedTurn],
        *,
        context: ContextEncoding,
        scale: float,
        batch_size: int,
        rng: np.random.Generator,
        hard: npt.NDArray[np.int64] | None = None,
        distinct: Sequence[str] = (),
        distinct_groups: npt.NDArray[np.int64] | None = None,
        weight: float = 1.0,
    ) -> None:
        self.encoder = encoder
        self.contexts = [p.context for p in pairs]
        self.replies = [p.reply for p in pairs]
        self.groups = np.asarray([p.group for p in pairs], dtype=np.int64)
        self.context = context
        self.scale = scale
        self.batch_size = batch_size
        self.rng = rng
        self.weight = weight
        self.hard = hard if hard is not None else np.full(len(pairs), -1, dtype=np.int64)
        self.distinct = list(distinct)
        groups_of = distinct_groups if distinct_groups is not None else np.zeros(0, np.int64)
        self.hard_groups = np.where(self.hard >= 0, groups_of[np.maximum(self.hard, 0)], -1)
        self.lengths = np.asarray(
            [len(ids) for ids in encoder.tokenizer(self.contexts, truncation=True)["input_ids"]],
            dtype=np.int64,
        )
        self._cycle: Iterator[npt.NDArray[np.int64]] | None = None

    def __len__(self) -> int:
        return len(self.contexts)

    def batches(self) -> Batches:
        """One epoch of batches (rows of similar context length)."""
        return length_batches(self.lengths, self.batch_size, self.rng)

    def parameters(self) -> list[torch.nn.Parameter]:
        return []

    def next_loss(self) -> torch.Tensor:
        if self._cycle is None:
            self._cycle = endless(self.lengths, self.batch_size, self.rng)
        idx = next(self._cycle)
        while len(idx) < 2:
            idx = next(self._cycle)
        return self.loss(idx)

    def loss(self, idx: npt.NDArray[np.int64]) -> torch.Tensor:
        """The batch of rows ``idx`` (at least 2)."""
        device = self.encoder.device
        with_hard = self.hard[idx] >= 0
        hard = [self.distinct[h] for h in self.hard[idx][with_hard]]
        texts = [self.replies[i] for i in idx] + hard
        col_groups = np.concatenate([self.groups[idx], self.hard_groups[idx][with_hard]])
        # a column of the row's own group is no negative (the diagonal is the target)
        same = self.groups[idx][:, None] == col_groups[None, :]
        same[np.arange(len(idx)), np.arange(len(idx))] = False
        q = embed_contexts(self.encoder, [self.contexts[i] for i in idx], self.context)
        r = self.encoder.embed(self.encoder.tokenize(texts))
        logits = self.scale * (q.float() @ r.float().T)  # (B, B + H)
        logits = logits.masked_fill(torch.tensor(same, device=device), float("-inf"))
        target = torch.arange(len(idx), device=device)
        return torch.nn.functional.cross_entropy(logits, target)


class IntentObjective:
    """A bot's intent examples with a cosine head of their own (class vectors from the
    encoder's centroids, trained along): keeps an encoder that the chat logs fine-tune
    good at telling the intents apart. The served head is fitted afterwards."""

    def __init__(
        self,
        encoder: Encoder,
        texts: Sequence[str],
        labels: Sequence[str],
        *,
        scale: float,
        batch_size: int,
        rng: np.random.Generator,
        label_smoothing: float = 0.1,
        weight: float = 1.0,
    ) -> None:
        self.encoder = encoder
        self.texts = list(texts)
        names = sorted(set(labels))
        index = {n: i for i, n in enumerate(names)}
        self.y = np.asarray([index[label] for label in labels], dtype=np.int64)
        base = encoder.encode(self.texts)  # (N, D)
        centroids = np.stack([base[self.y == c].mean(axis=0) for c in range(len(names))])
        self.class_vectors = torch.nn.Parameter(
            torch.tensor(scoring.normalize(centroids), device=encoder.device)
        )
        self.scale = scale
        self.batch_size = batch_size
        self.weight = weight
        self.label_smoothing = label_smoothing
        lengths = np.asarray(
            [len(ids) for ids in encoder.tokenizer(self.texts, truncation=True)["input_ids"]],
            dtype=np.int64,
        )
        self._cycle = endless(lengths, batch_size, rng)

    def parameters(self) -> list[torch.nn.Parameter]:
        return [self.class_vectors]

    def next_loss(self) -> torch.Tensor:
        idx = next(self._cycle)
        emb = self.encoder.embed(self.encoder.tokenize([self.texts[i] for i in idx]))  # (B, D)
        weights = self.scale * torch.nn.functional.normalize(self.class_vectors, dim=-1)
        logits = emb.float() @ weights.T  # (B, C)
        target = torch.tensor(self.y[idx], device=self.encoder.device)
        return torch.nn.functional.cross_entropy(
            logits, target, label_smoothing=self.label_smoothing
        )
