"""How well each intent's answer fits a message, on the same scale as a past reply's.

The intent head's probability says which intent a message is *among the intents*; it
cannot say that the message is about something no intent covers but a past chat answers
(gift wrapping in a shop whose intents are orders and returns). So each intent is also
scored as a retrieved reply is (``retrieval.ranking``): its context similarity is the
message's cosine to the nearest of the intent's examples, its reply similarity the cosine
to the text the intent answers with, and the bundle's reply calibration turns the mix into
the probability that this answer is right. The engine weighs an intent's answer against a
past reply by these two comparable numbers. Pure numpy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from retrieval.ranking import ReplyCalibration

Array = npt.NDArray[np.float32]
SUPPORT_FILE = "intent_support.npz"


@dataclass(frozen=True)
class IntentSupport:
    examples: Array
    """(N, D) unit embeddings of the bot's intent examples."""
    labels: npt.NDArray[np.int64]
    """(N,) column of each example's intent in ``intents``."""
    answers: Array
    """(C, D) unit embedding of the text each intent answers with (zeros: none)."""
    answered: npt.NDArray[np.bool_]
    """(C,) whether the intent has such a text (an action or a hand-over has none)."""
    intents: tuple[str, ...]
    calibration: ReplyCalibration | None = None
    """Its own calibration, fitted on the bot's examples (``training.support_calibration``);
    None: the past replies' one is used (support files from before it)."""

    def scores(self, queries: Array, calibration: ReplyCalibration) -> Array:
        """(B, D) message embeddings -> (B, C) probability that each intent's answer is
        right, as :func:`retrieval.ranking.rank_hits` scores a past reply; with the
        support's own calibration where it has one, else ``calibration``."""
        calibration = self.calibration or calibration
        sims = queries @ self.examples.T  # (B, N)
        nearest = np.full((len(queries), len(self.intents)), -1.0, dtype=np.float32)
        np.maximum.at(nearest.T, self.labels, sims.T)  # (B, C): best example of each intent
        reply = queries @ self.answers.T  # (B, C)
        reply = np.where(self.answered[None, :], reply, nearest).astype(np.float32)
        return calibration.probability(calibration.fused(nearest, reply))

    def in_order(self, names: tuple[str, ...]) -> IntentSupport:
        """The same support with its columns in the order of ``names`` (the head's)."""
        column = {name: i for i, name in enumerate(self.intents)}
        order = np.asarray([column[n] for n in names], dtype=np.int64)
        remap = np.empty(len(self.intents), dtype=np.int64)
        remap[order] = np.arange(len(order))
        return IntentSupport(
            self.examples,
            remap[self.labels],
            self.answers[order],
            self.answered[order],
            names,
            self.calibration,
        )

    def save(self, path: Path) -> None:
        np.savez(
            path,
            examples=self.examples,
            labels=self.labels,
            answers=self.answers,
            answered=self.answered,
            intents=np.asarray(self.intents),
            calibration=np.asarray(
                json.dumps(self.calibration.to_json() if self.calibration else None)
            ),
        )

    @classmethod
    def load(cls, path: Path) -> IntentSupport:
        with np.load(path, allow_pickle=False) as data:
            return cls(
                examples=data["examples"].astype(np.float32),
                labels=data["labels"].astype(np.int64),
                answers=data["answers"].astype(np.float32),
                answered=data["answered"].astype(bool),
                intents=tuple(str(x) for x in data["intents"]),
                calibration=ReplyCalibration.from_json(json.loads(str(data["calibration"])))
                if "calibration" in data and json.loads(str(data["calibration"])) is not None
                else None,
            )
