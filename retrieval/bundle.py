"""A model bundle: the encoder, the intent head and the dialogue index of one version,
loaded once and shared by every conversation (it holds no conversation state).

One encoder pass per batch of messages serves intent prediction, out-of-scope scoring,
retrieval and reply scoring (DESIGN §2).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from retrieval import scoring
from retrieval.errors import BundleError
from retrieval.index import DialogueIndex

if TYPE_CHECKING:
    from retrieval.encoder import Encoder

MANIFEST = "manifest.json"
HEAD_FILE = "intent_head.npz"
ENCODER_DIR = "encoder"
INDEX_DIR = "index"
FORMAT = 1


@dataclass(frozen=True)
class IntentHead:
    labels: tuple[str, ...]
    weight: npt.NDArray[np.float32]  # (C, D)
    bias: npt.NDArray[np.float32]  # (C,)
    temperature: float
    examples: npt.NDArray[np.float32]  # (E, D) training example embeddings
    oos_similarity: float
    """Nearest-example similarity at which the out-of-scope score is 0.5."""

    def predict(
        self, embeddings: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """(B, D) -> probabilities (B, C), out-of-scope scores (B,)."""
        probs = scoring.intent_probabilities(embeddings, self.weight, self.bias, self.temperature)
        similarity = scoring.max_similarity(embeddings, self.examples)
        return probs, scoring.out_of_scope_score(similarity, self.oos_similarity)

    def save(self, path: Path) -> None:
        np.savez(
            path,
            labels=np.asarray(self.labels),
            weight=self.weight,
            bias=self.bias,
            temperature=np.float32(self.temperature),
            examples=self.examples,
            oos_similarity=np.float32(self.oos_similarity),
        )

    @classmethod
    def load(cls, path: Path) -> IntentHead:
        with np.load(path, allow_pickle=False) as data:
            return cls(
                labels=tuple(str(x) for x in data["labels"]),
                weight=data["weight"].astype(np.float32),
                bias=data["bias"].astype(np.float32),
                temperature=float(data["temperature"]),
                examples=data["examples"].astype(np.float32),
                oos_similarity=float(data["oos_similarity"]),
            )


@dataclass(frozen=True)
class ScoredReply:
    text: str
    score: float
    conversation_id: str


@dataclass(frozen=True)
class Analysis:
    """Model outputs for one message, before the engine sees them."""

    intents: tuple[tuple[str, float], ...]  # (name, probability), best first
    out_of_scope: float
    replies: tuple[ScoredReply, ...]  # retrieved agent replies, best first


class Bundle:
    def __init__(
        self,
        path: Path,
        manifest: Mapping[str, Any],
        encoder: Encoder,
        head: IntentHead,
        index: DialogueIndex,
    ) -> None:
        self.path = path
        self.manifest = manifest
        self.encoder = encoder
        self.head = head
        self.index = index

    @property
    def version(self) -> str:
        return self.path.name

    @classmethod
    def load(cls, path: Path) -> Bundle:
        """Load and check a bundle; a broken one raises :class:`BundleError`."""
        manifest_path = path / MANIFEST
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise BundleError(f"{manifest_path}: cannot read the bundle manifest: {exc}") from exc
        if manifest.get("format") != FORMAT:
            raise BundleError(
                f"{manifest_path}: expected bundle format {FORMAT}, got {manifest.get('format')!r}"
            )
        try:
            head = IntentHead.load(path / HEAD_FILE)
        except (OSError, KeyError, ValueError) as exc:
            raise BundleError(f"{path / HEAD_FILE}: cannot load the intent head: {exc}") from exc
        from retrieval.encoder import Encoder

        try:
            encoder = Encoder(path / ENCODER_DIR)
        except (OSError, ValueError) as exc:
            raise BundleError(f"{path / ENCODER_DIR}: cannot load the encoder: {exc}") from exc
        index = DialogueIndex.load(path / INDEX_DIR)
        if head.weight.shape[1] != encoder.dim or index.dim != encoder.dim:
            raise BundleError(
                f"{path}: encoder dimension {encoder.dim} does not match the intent head "
                f"({head.weight.shape[1]}) or the index ({index.dim})"
            )
        return cls(path, manifest, encoder, head, index)

    def analyze(self, texts: Sequence[str], k: int = 5) -> list[Analysis]:
        """One encoder pass over ``texts``; everything else is array math."""
        embeddings = self.encoder.encode(texts)  # (B, D)
        probs, oos = self.head.predict(embeddings)  # (B, C), (B,)
        hits = self.index.search(embeddings, k)
        results: list[Analysis] = []
        for row, emb in enumerate(embeddings):
            order = scoring.top_k(probs[row], len(self.head.labels))
            intents = tuple((self.head.labels[i], float(probs[row, i])) for i in order)
            replies: tuple[ScoredReply, ...] = ()
            if hits[row]:
                ctx = np.asarray([h.similarity for h in hits[row]], dtype=np.float32)
                rep = np.stack([h.reply_embedding for h in hits[row]]) @ emb  # (K,)
                scores = scoring.reply_scores(ctx, rep)
                replies = tuple(
                    ScoredReply(h.item.reply, float(scores[j]), h.item.conversation_id)
                    for j, h in sorted(enumerate(hits[row]), key=lambda jh: -scores[jh[0]])
                )
            results.append(Analysis(intents, float(oos[row]), replies))
        return results
