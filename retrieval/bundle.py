"""A model bundle: the encoder, the intent head and the dialogue index of one version,
loaded once and shared by every conversation (it holds no conversation state).

One encoder pass per batch of messages serves intent prediction, out-of-scope scoring,
retrieval and reply scoring (DESIGN §2).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from retrieval import scoring
from retrieval.context import ContextEncoding, TurnCache, fuse, window_turns
from retrieval.errors import BundleError
from retrieval.index import DialogueIndex
from retrieval.intent_head import IntentHead
from retrieval.onnx_encoder import ONNX_INT8_FILE, OnnxEncoder
from retrieval.ranking import ReplyCalibration, rank_rows
from retrieval.support import SUPPORT_FILE, IntentSupport

log = logging.getLogger(__name__)


class TextEncoder(Protocol):
    dim: int

    def encode(
        self, texts: Sequence[str], batch_size: int = 64, max_tokens: int | None = None
    ) -> npt.NDArray[np.float32]: ...


MANIFEST = "manifest.json"
HEAD_FILE = "intent_head.npz"
ENCODER_DIR = "encoder"
INDEX_DIR = "index"
BOT_DIR = "bot"
"""The bot definition a bundle was trained for (``training.pipeline.snapshot_bot``)."""
FORMAT = 2
REPLIES = 5
"""Past replies the server asks for per message (:meth:`Bundle.analyze`'s ``k``)."""
OVERFETCH = 4


@dataclass(frozen=True)
class ScoredReply:
    text: str
    score: float
    conversation_id: str
    question: str = ""
    """What the customer asked when the reply was given."""


@dataclass(frozen=True)
class Analysis:
    """Model outputs for one message, before the engine sees them."""

    intents: tuple[tuple[str, float], ...]  # (name, probability), best first
    out_of_scope: float
    replies: tuple[ScoredReply, ...]  # retrieved agent replies, best first
    support: tuple[float, ...] = ()
    """Per intent of ``intents`` (same order): the probability that its answer is right on
    the past replies' scale (``retrieval.support``); empty for bundles without support."""
    reply_threshold: float | None = None
    """The past-reply threshold fitted in training (None: the bundle has none)."""


class Bundle:
    def __init__(
        self,
        path: Path,
        manifest: Mapping[str, Any],
        encoder: TextEncoder,
        head: IntentHead,
        index: DialogueIndex,
        support: IntentSupport | None = None,
    ) -> None:
        self.path = path
        self.manifest = manifest
        self.encoder = encoder
        self.head = head
        self.index = index
        self.reply_calibration = ReplyCalibration.from_json(manifest.get("reply_calibration"))
        self.context_encoding = ContextEncoding.from_json(manifest.get("context_encoding"))
        self.turns = TurnCache()
        """Fused windows only: embeddings of the turns seen lately."""
        self.support = support.in_order(head.intents) if support is not None else None

    @property
    def version(self) -> str:
        return self.path.name

    @property
    def precision(self) -> str:
        """The encoder's arithmetic as loaded: ``int8`` (its int8 export, where asked for
        and the bundle has one) or ``fp32``."""
        return "int8" if getattr(self.encoder, "int8", False) else "fp32"

    @classmethod
    def load(cls, path: Path, int8: bool = False, threads: int = 0) -> Bundle:
        """Load and check a bundle; a broken one raises :class:`BundleError`. ``threads``:
        the ONNX encoder's threads per pass (0: onnxruntime's choice, one per core)."""
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
        try:
            encoder = load_encoder(path / ENCODER_DIR, int8, threads)
        except (OSError, ValueError, RuntimeError) as exc:
            raise BundleError(f"{path / ENCODER_DIR}: cannot load the encoder: {exc}") from exc
        index = DialogueIndex.load(path / INDEX_DIR)
        support = None
        if (path / SUPPORT_FILE).is_file():
            try:
                support = IntentSupport.load(path / SUPPORT_FILE)
            except (OSError, KeyError, ValueError) as exc:
                raise BundleError(f"{path / SUPPORT_FILE}: cannot load: {exc}") from exc
            if set(support.intents) != set(head.intents):
                # the head decides which intents a bundle knows; an extra that does not
                # match it is left out (and the head is checked against the bot as ever)
                log.warning("%s: not the intents of the intent head: not used", path / SUPPORT_FILE)
                support = None
        if head.weight.shape[1] != encoder.dim or index.dim != encoder.dim:
            raise BundleError(
                f"{path}: encoder dimension {encoder.dim} does not match the intent head "
                f"({head.weight.shape[1]}) or the index ({index.dim})"
            )
        return cls(path, manifest, encoder, head, index, support)

    def predict_intents(
        self, texts: Sequence[str]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """In-scope probabilities (N, C_in) in ``head.intents`` order, out-of-scope scores (N,)."""
        return self.head.predict(self.encoder.encode(texts))

    def analyze(
        self, texts: Sequence[str], contexts: Sequence[str] | None = None, k: int = REPLIES
    ) -> list[Analysis]:
        """One encoder pass over the messages ``texts`` and, where a conversation has
        history, their context windows (``retrieval.pairs.context_text``, "" for none);
        the intents read the message, retrieval and ranking the context window.
        Everything after the encoder is array math."""
        contexts = list(contexts) if contexts is not None else [""] * len(texts)
        if self.context_encoding.fused:
            messages, queries = self._encode_fused(texts, contexts)
        else:
            with_context = [i for i, c in enumerate(contexts) if c]
            messages = self.encoder.encode(texts)  # (B, D)
            queries = messages.copy()
            if with_context:
                queries[with_context] = self.context_encoding.encode(
                    self.encoder.encode, [contexts[i] for i in with_context], serving=True
                )
        probs, oos = self.head.predict(messages)  # (B, C), (B,)
        # over-fetch: near-duplicates of one answer collapse into one candidate
        sims, rows = self.index.search_rows(queries, k * OVERFETCH)
        ranked = rank_rows(queries, sims, rows, self.index, self.reply_calibration, k)
        names = self.head.intents
        fits = (
            self.support.scores(messages, self.reply_calibration)  # (B, C)
            if self.support is not None and names
            else None
        )
        threshold = self.reply_calibration.threshold
        results: list[Analysis] = []
        for row in range(len(queries)):
            order = scoring.top_k(probs[row], len(names))
            intents = tuple((names[i], float(probs[row, i])) for i in order)
            support = tuple(float(fits[row, i]) for i in order) if fits is not None else ()
            replies = tuple(
                ScoredReply(r.text, r.score, r.conversation_id, r.question) for r in ranked[row]
            )
            results.append(Analysis(intents, float(oos[row]), replies, support, threshold))
        return results

    def _encode_fused(
        self, texts: Sequence[str], contexts: Sequence[str]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """-> (message embeddings, query embeddings), both (B, D). A window's newest turn is
        its message; one encoder pass takes the messages and the earlier turns not in the turn
        cache, and all of them go into it. Messages are always encoded, cached or not: a
        repeated "hi" would be free, but the benchmarks' fixed phrases would then measure
        no encoder at all."""
        if not texts:
            empty = np.zeros((0, self.encoder.dim), dtype=np.float32)
            return empty, empty
        weights = self.context_encoding.weights
        windows = [
            [text, *(window_turns(context)[1 : len(weights)] if context else [])]
            for text, context in zip(texts, contexts, strict=True)
        ]
        earlier = list(dict.fromkeys(t for turns in windows for t in turns[1:]))
        found = self.turns.get_many(earlier)
        known = {t: v for t, v in zip(earlier, found, strict=True) if v is not None}
        fresh = list(dict.fromkeys([*texts, *(t for t in earlier if t not in known)]))
        vectors = self.encoder.encode(fresh)  # (F, D)
        self.turns.put_many(fresh, vectors)
        known.update(zip(fresh, vectors, strict=True))
        messages = np.stack([known[t] for t in texts])
        queries = np.stack([fuse([known[t] for t in turns], weights) for turns in windows])
        return messages, queries


def load_encoder(folder: Path, int8: bool = False, threads: int = 0) -> TextEncoder:
    """The ONNX encoder when the bundle has one (serving needs no torch then), else torch;
    with ``int8``, its int8 export where the bundle has one (older bundles: fp32, logged)."""
    if OnnxEncoder.available(folder):
        if int8 and not (folder / ONNX_INT8_FILE).is_file():
            log.warning("%s has no int8 export (retrain to get one): serving fp32", folder)
            int8 = False
        return OnnxEncoder(folder, int8=int8, threads=threads)
    from retrieval.encoder import Encoder

    return Encoder(folder)
