"""How a context window (``retrieval.pairs.context_text``) becomes one query vector.

``joint``: the window's text goes through the encoder as one sequence (cut to
:data:`JOINT_TOKENS` at serving time), so every turn is encoded again with each message.
``fused``: each turn's text is encoded alone (a customer's as written, an agent's or the
bot's tagged ``agent: ``), and the window is the normalised weighted sum of its turns, most
recent first. At serving time the newest turn is
the customer's message, whose embedding the intent head reads anyway, and the turns before it
were seen before (:class:`TurnCache`), so a message costs one short encoder sequence instead
of two. A ranker is trained for the encoding its bundle serves (``training.ranker``).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from retrieval.pairs import SEPARATOR

Vectors = npt.NDArray[np.float32]
Mode = Literal["joint", "fused"]

JOINT_TOKENS = 64
"""Joint windows are encoded up to this many tokens at serving time (most recent turn
first, so the oldest words go): half the encoder's limit, at no measured loss on STAR
(recall@1 0.5531 vs 0.5533 at 128; 0.548 at 48, 0.517 at 32), for about half the cost."""
FUSED_WEIGHTS = (1.0, 0.5, 0.25)
"""Turn weights of a fused window, most recent turn first (decay 0.5; BENCHMARKS.md)."""
_CUSTOMER = "customer: "


def window_turns(context: str) -> list[str]:
    """The turn texts of a window written by ``context_text``, most recent first: a
    customer's turn as written (so the message's embedding is the intents' one), an agent's
    or the bot's tagged ``agent: `` (who said it is part of what it means)."""
    return [part.removeprefix(_CUSTOMER) for part in context.split(SEPARATOR)]


def fuse(turns: Sequence[Vectors], weights: Sequence[float]) -> Vectors:
    """Unit vector of the weighted sum of one window's turn embeddings (T, D) -> (D,);
    turns beyond ``weights`` are dropped."""
    total = np.zeros_like(turns[0])
    for weight, vector in zip(weights, turns, strict=False):
        total += weight * vector
    norm = float(np.linalg.norm(total))
    return total / norm if norm > 0 else total


@dataclass(frozen=True)
class ContextEncoding:
    mode: Mode = "joint"
    weights: tuple[float, ...] = FUSED_WEIGHTS

    def __post_init__(self) -> None:
        if self.mode not in ("joint", "fused"):
            raise ValueError(f"context encoding must be 'joint' or 'fused', got {self.mode!r}")
        if not self.weights or any(w < 0 for w in self.weights) or self.weights[0] <= 0:
            raise ValueError(
                f"fused turn weights must be >= 0 with the newest > 0, got {self.weights!r}"
            )

    @property
    def fused(self) -> bool:
        return self.mode == "fused"

    def encode(
        self,
        encode: Callable[..., Vectors],
        contexts: Sequence[str],
        *,
        serving: bool = False,
    ) -> Vectors:
        """(N, D) query vectors of the windows ``contexts`` through the encoder function
        ``encode`` (``TextEncoder.encode``); every distinct turn is encoded once.
        ``serving``: joint windows cut to :data:`JOINT_TOKENS`, as the server does."""
        if not self.fused:
            if serving:
                return encode(contexts, max_tokens=JOINT_TOKENS)
            return encode(contexts)
        windows = [window_turns(c)[: len(self.weights)] for c in contexts]
        if not windows:
            return np.zeros((0, 0), dtype=np.float32)
        distinct = sorted({t for turns in windows for t in turns})
        row = {text: i for i, text in enumerate(distinct)}
        embedded = encode(distinct)  # (T, D)
        fused = [fuse([embedded[row[t]] for t in turns], self.weights) for turns in windows]
        return np.stack(fused).astype(np.float32, copy=False)

    def to_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "weights": list(self.weights)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> ContextEncoding:
        """A bundle's encoding; bundles written before there was a choice are joint."""
        if not data:
            return cls()
        return cls(
            mode=data.get("mode", "joint"), weights=tuple(data.get("weights", FUSED_WEIGHTS))
        )


class TurnCache:
    """Embeddings of turn texts seen lately, for fused windows at serving time: a bot's
    answers repeat, and a customer's message is the next window's previous turn. Bounded;
    the oldest entries go first. Shared by the inference threads."""

    def __init__(self, capacity: int = 20_000) -> None:
        self.capacity = capacity
        self._items: dict[str, Vectors] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def get_many(self, texts: Sequence[str]) -> list[Vectors | None]:
        with self._lock:
            found = [self._items.get(t) for t in texts]
        hits = sum(v is not None for v in found)
        self.hits += hits
        self.misses += len(found) - hits
        return found

    def put_many(self, texts: Sequence[str], vectors: Vectors) -> None:
        with self._lock:
            for text, vector in zip(texts, vectors, strict=True):
                self._items.pop(text, None)
                self._items[text] = vector
            excess = len(self._items) - self.capacity
            for text in list(itertools.islice(self._items, max(0, excess))):
                del self._items[text]
