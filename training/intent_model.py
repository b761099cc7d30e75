"""``frontdesk intents train``: labelled rows -> an intent model folder.

The folder is a model bundle (encoder + ONNX export, calibrated head, an empty dialogue
index, training arguments, manifest) with an evaluation report of the validation rows
under ``reports/validation/``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from retrieval import bundle as bundle_files
from retrieval.index import DialogueIndex
from training.args import TrainingArguments, load_base_encoder
from training.continual import Start, replay, write_rows
from training.errors import log_skipped
from training.intent_data import (
    OOS_LABEL,
    IntentRows,
    RowProblem,
    read_intent_rows,
)
from training.intent_eval import VALIDATION_REPORT, evaluate_rows
from training.intents import train_intents
from training.outdir import check_out, staging_beside
from training.pipeline import save_bundle
from training.precision import resolved as resolved_precision

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IntentModelResult:
    path: Path
    intents: int
    train_rows: int
    valid_rows: int
    oos_rows: int
    """Out-of-scope rows among the ``train_rows``."""
    epochs: int
    """Fine-tuning epochs planned; 0: the encoder was kept, the head fitted to it."""
    best_epoch: int
    head_refitted: bool
    """The head (fitted alone) was fitted again on the validation rows too, once they had
    set its thresholds: it learnt from all ``train_rows + valid_rows``."""
    seconds: float
    valid_metrics: dict[str, float | int | None]
    problems: tuple[RowProblem, ...]
    continued_from: Path | None = None
    """The model folder this one continued from (``--from``); None: the base encoder."""
    replayed_rows: int = 0
    """Rows of the earlier model mixed into the training rows (counted in them)."""


def train_intent_model(
    train: Path,
    out: Path,
    *,
    valid: Path | None = None,
    args: TrainingArguments | None = None,
    base_model: Path | None = None,
    oos_label: str = OOS_LABEL,
    progress: bool = True,
    on_problems: Callable[[Sequence[RowProblem]], None] | None = None,
    start: Start | None = None,
) -> IntentModelResult:
    """Train an intent model from the rows of ``train`` into the folder ``out``.
    ``start``: an earlier model to continue from (``frontdesk intents train --from``): its
    weights and class vectors, with a sample of its rows replayed, so ``train`` may hold
    new intents only and the model still knows the old ones."""
    started = time.perf_counter()
    args = args or TrainingArguments()
    check_out(out)
    rows = read_intent_rows(train)
    texts, labels, replayed = list(rows.texts), list(rows.labels), 0
    run_args = args
    if start is not None:
        texts, labels, replayed = replay(
            texts, labels, start.rows, per_intent=args.replay_per_intent, seed=args.seed
        )
        if not len(start.rows):
            log.warning(
                "%s keeps no rows it learnt from (a model from before they were kept): "
                "only its weights carry what it knew",
                start.bundle,
            )
        budget = max(1, round(args.examples_budget * args.continue_budget))
        lr = args.learning_rate * args.continue_lr_scale
        run_args = replace(args, examples_budget=budget, learning_rate=lr)
    problems = list(rows.problems)
    valid_rows = read_intent_rows(valid) if valid is not None else None
    if valid_rows is not None:
        problems.extend(valid_rows.problems)
    (on_problems or log_skipped)(problems)  # before training: it may take minutes

    device = args.resolved_device()
    base = start.encoder if start is not None else base_model
    encoder = load_base_encoder(base, device, args.max_length, args.layers)
    training = train_intents(
        encoder,
        texts,
        labels,
        run_args,
        valid_texts=valid_rows.texts if valid_rows else None,
        valid_labels=valid_rows.labels if valid_rows else None,
        oos_label=oos_label,
        progress=progress,
        initial_vectors=start.class_vectors if start is not None else None,
    )
    head = training.head
    manifest: dict[str, object] = {
        "format": bundle_files.FORMAT,
        "kind": "intents",
        "created_at": datetime.now(UTC).isoformat(),
        "train": str(train),
        "valid": str(valid) if valid else None,
        "intents": list(head.intents),
        "oos_label": head.oos_label,
        "train_rows": training.train_rows,
        "valid_rows": training.valid_rows,
        "device": device,
        "precision": resolved_precision(args.precision, device),
        "training_args": asdict(args),
        "epochs": training.epochs,
        "batch_size": training.batch_size,
        "best_epoch": training.best_epoch,
        "history": [asdict(r) for r in training.history],
        "temperature": head.temperature,
        "threshold": head.threshold,
        "min_similarity": head.min_similarity,
        "head_refitted": training.validated_head is not None,
        "continued_from": str(start.bundle) if start is not None else None,
        "replayed_rows": replayed,
    }
    with staging_beside(out) as staging:
        save_bundle(
            staging,
            encoder=encoder,
            head=head,
            index=DialogueIndex(encoder.dim),
            args=args,
            manifest=manifest,
        )
        # rows a head was fitted again on (a refit) are learnt from, not held out
        carved = valid is None and training.validated_head is None
        held_out = training.valid_texts if carved else ()
        write_rows(staging, texts, labels, held_out)
        valid_metrics: dict[str, float | int | None] = {}
        if training.valid_rows:
            # a head refitted with the validation rows would be scored on rows it has
            # seen: the report is of the head before (same encoder, thresholds, temperature)
            validated = training.validated_head
            valid_metrics = evaluate_rows(
                staging,
                IntentRows(training.valid_texts, training.valid_labels),
                report_name=VALIDATION_REPORT,
                model_name=out.name if validated is None else f"{out.name} (before the refit)",
                head=validated,
            )
    return IntentModelResult(
        path=out,
        intents=len(head.intents),
        train_rows=training.train_rows,
        valid_rows=training.valid_rows,
        oos_rows=oos_in(labels, oos_label)
        - (oos_in(training.valid_labels, oos_label) if valid is None else 0),  # carved out
        epochs=training.epochs,
        best_epoch=training.best_epoch,
        head_refitted=training.validated_head is not None,
        seconds=time.perf_counter() - started,
        valid_metrics=valid_metrics,
        problems=tuple(problems),
        continued_from=start.bundle if start is not None else None,
        replayed_rows=replayed,
    )


def oos_in(labels: Sequence[str], oos_label: str) -> int:
    return sum(1 for label in labels if label == oos_label)
