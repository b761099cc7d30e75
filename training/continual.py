"""Continual learning: a training that starts from an earlier model and keeps what it knew.

A bundle keeps the rows it learnt from in ``data/rows.jsonl`` (redacted, as the index is):
each intent row with its intent and whether training held it out for validation; and the
chat logs it learnt from and indexed in ``data/logs.jsonl`` (redacted). The next
training continues from that bundle's encoder weights and class vectors (new intents get
new rows of the head, from their centroids), mixes a sample of the earlier rows into
its own (:func:`replay`), so old intents are not forgotten when the new data holds only
new ones, and carries over the earlier conversations the new logs do not hold
(:func:`carried_logs`): they stay in the index and in the ranking objective. A continued
training sees about :attr:`TrainingArguments.continue_budget` of a fresh training's
examples: it refines, it does not start over.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

from retrieval.bundle import ENCODER_DIR, HEAD_FILE, MANIFEST
from retrieval.chatlog import ChatLog, read_chatlog_jsonl, write_chatlog_jsonl
from retrieval.intent_head import IntentHead
from training.errors import TrainingError

log = logging.getLogger(__name__)

ROWS_FILE = "data/rows.jsonl"
"""The intent rows a bundle learnt from (and held out), one JSON object a line."""
CONVERSATIONS_FILE = "data/conversations.json"
"""The ids of the conversations a bundle's ranking objective trained on and held out."""
LOGS_FILE = "data/logs.jsonl"
"""The chat logs a bundle learnt from and indexed, redacted (chat-log JSONL)."""


@dataclass(frozen=True)
class LearntRows:
    """What an earlier model learnt from: its intent rows and which it held out."""

    texts: tuple[str, ...]
    labels: tuple[str, ...]
    held_out: tuple[bool, ...]

    def __len__(self) -> int:
        return len(self.texts)


@dataclass(frozen=True)
class Start:
    """Where a continued training starts: the earlier bundle's folder, its encoder folder
    (the weights to load), its head's class vectors by intent, and its rows."""

    bundle: Path
    class_vectors: Mapping[str, npt.NDArray[np.float32]]
    rows: LearntRows

    @property
    def encoder(self) -> Path:
        return self.bundle / ENCODER_DIR

    @property
    def version(self) -> str:
        return self.bundle.name


def write_rows(
    folder: Path,
    texts: Sequence[str],
    labels: Sequence[str],
    held_out: Sequence[str],
    redact: Callable[[str], str] | None = None,
) -> None:
    """Save the rows a model learnt from into ``folder/data/rows.jsonl``; rows whose text
    is in ``held_out`` are marked so (a later gate scores on them). ``redact`` is applied
    to every text first."""
    out = folder / ROWS_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    kept = set(held_out)
    clean = redact or (lambda text: text)
    with out.open("w", encoding="utf-8") as handle:
        for text, label in zip(texts, labels, strict=True):
            row = {"text": clean(text), "intent": label, "held_out": text in kept}
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def read_rows(folder: Path) -> LearntRows:
    """The rows of :func:`write_rows`; none for a bundle that predates them."""
    path = folder / ROWS_FILE
    if not path.is_file():
        return LearntRows((), (), ())
    texts: list[str] = []
    labels: list[str] = []
    held: list[bool] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            text, label, out = str(row["text"]), str(row["intent"]), bool(row["held_out"])
        except (ValueError, KeyError, TypeError) as exc:
            raise TrainingError(f"{path}:{number}: not a learnt row ({exc})") from None
        texts.append(text)
        labels.append(label)
        held.append(out)
    return LearntRows(tuple(texts), tuple(labels), tuple(held))


def write_conversations(folder: Path, trained: Sequence[str], held_out: Sequence[str]) -> None:
    """Save which conversations the ranking objective trained on and held out."""
    out = folder / CONVERSATIONS_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"trained": sorted(set(trained)), "held_out": sorted(set(held_out))}
    out.write_text(json.dumps(payload) + "\n", encoding="utf-8")


def read_conversations(folder: Path) -> tuple[frozenset[str], frozenset[str]]:
    """(trained, held out) conversation ids of :func:`write_conversations`; empty sets for
    a bundle that predates them."""
    path = folder / CONVERSATIONS_FILE
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return frozenset(), frozenset()
    except ValueError as exc:
        raise TrainingError(f"{path}: not JSON ({exc})") from None
    return frozenset(payload.get("trained", ())), frozenset(payload.get("held_out", ()))


def write_logs(
    folder: Path, logs: Sequence[ChatLog], redact: Callable[[str], str] | None = None
) -> None:
    """Save the chat logs a bundle learnt from, each turn redacted, for the next training
    to carry over (:func:`carried_logs`)."""
    clean = redact or (lambda text: text)
    out = folder / LOGS_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    write_chatlog_jsonl(
        (
            replace(log, turns=tuple(replace(t, text=clean(t.text)) for t in log.turns))
            for log in logs
        ),
        out,
    )


def carried_logs(start: Start, given: Sequence[ChatLog]) -> list[ChatLog]:
    """The conversations the earlier bundle learnt from that ``given`` does not hold (by
    id): a training that continues keeps answering from them and keeps training on them,
    though tonight's logs are only the new ones."""
    path = start.bundle / LOGS_FILE
    if not path.is_file():
        return []
    ids = {log.id for log in given}
    return [log for log in read_chatlog_jsonl(path).logs if log.id not in ids]


def start_from(bundle: Path) -> Start:
    """What a training continuing from ``bundle`` needs; a folder without an encoder or a
    head is a :class:`TrainingError` naming what is missing."""
    for name in (MANIFEST, HEAD_FILE, ENCODER_DIR):
        if not (bundle / name).exists():
            raise TrainingError(
                f"{bundle}: cannot continue from it, it has no {name} (not a complete model "
                "folder); give a model folder that `frontdesk train` or `frontdesk intents "
                "train` wrote, or train from scratch"
            )
    head = IntentHead.load(bundle / HEAD_FILE)
    vectors = {name: head.weight[i] for i, name in enumerate(head.labels)}
    return Start(bundle, vectors, read_rows(bundle))


def replay(
    texts: Sequence[str],
    labels: Sequence[str],
    earlier: LearntRows,
    *,
    per_intent: int,
    keep: Callable[[str], bool] | None = None,
    seed: int = 13,
) -> tuple[list[str], list[str], int]:
    """The new rows with up to ``per_intent`` earlier rows of each earlier intent mixed in
    (texts the new rows hold are not repeated; held-out earlier rows are never replayed,
    so a gate can still score on them); ``keep`` drops intents that no longer exist.
    -> (texts, labels, rows replayed)."""
    rng = np.random.default_rng(seed)
    seen = set(texts)
    by_intent: dict[str, list[str]] = {}
    for text, label, held in zip(earlier.texts, earlier.labels, earlier.held_out, strict=True):
        if held or text in seen or (keep is not None and not keep(label)):
            continue
        by_intent.setdefault(label, []).append(text)
    out_texts, out_labels = list(texts), list(labels)
    replayed = 0
    for label in sorted(by_intent):
        rows = by_intent[label]
        take = rng.permutation(len(rows))[:per_intent]
        out_texts.extend(rows[i] for i in sorted(take))
        out_labels.extend([label] * len(take))
        replayed += len(take)
    return out_texts, out_labels, replayed


def held_out_rows(earlier: LearntRows) -> tuple[list[str], list[str]]:
    """The earlier model's held-out rows: still held out by a training that continues."""
    pairs = [
        (t, y) for t, y, h in zip(earlier.texts, earlier.labels, earlier.held_out, strict=True) if h
    ]
    return [t for t, _ in pairs], [y for _, y in pairs]
