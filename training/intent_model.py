"""``frontdesk intents train``: labelled rows -> an intent model folder.

The folder is a model bundle (encoder + ONNX export, calibrated head, an empty dialogue
index, training arguments, manifest) with an evaluation report of the validation rows
under ``reports/validation/``.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from retrieval import bundle as bundle_files
from retrieval.index import DialogueIndex
from training.args import TrainingArguments, load_base_encoder
from training.intent_data import (
    OOS_LABEL,
    IntentDataError,
    IntentRows,
    RowProblem,
    read_intent_rows,
)
from training.intent_eval import evaluate_rows
from training.intents import train_intents
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
    epochs: int
    """Fine-tuning epochs planned; 0: the encoder was kept, the head fitted to it."""
    best_epoch: int
    seconds: float
    valid_metrics: dict[str, float | int | None]
    problems: tuple[RowProblem, ...]


def train_intent_model(
    train: Path,
    out: Path,
    *,
    valid: Path | None = None,
    args: TrainingArguments | None = None,
    base_model: Path | None = None,
    oos_label: str = OOS_LABEL,
    progress: bool = True,
) -> IntentModelResult:
    started = time.perf_counter()
    args = args or TrainingArguments()
    check_out(out)
    rows = read_intent_rows(train)
    problems = list(rows.problems)
    valid_rows = read_intent_rows(valid) if valid is not None else None
    if valid_rows is not None:
        problems.extend(valid_rows.problems)
    for problem in problems:
        log.warning("skipped: %s", problem)

    device = args.resolved_device()
    encoder = load_base_encoder(base_model, device, args.max_length, args.layers)
    training = train_intents(
        encoder,
        rows.texts,
        rows.labels,
        args,
        valid_texts=valid_rows.texts if valid_rows else None,
        valid_labels=valid_rows.labels if valid_rows else None,
        oos_label=oos_label,
        progress=progress,
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
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        save_bundle(
            staging,
            encoder=encoder,
            head=head,
            index=DialogueIndex(encoder.dim),
            args=args,
            manifest=manifest,
        )
        valid_metrics: dict[str, float | int | None] = {}
        if training.valid_rows:
            valid_metrics = evaluate_rows(
                staging,
                IntentRows(training.valid_texts, training.valid_labels),
                report_name="validation",
            )
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return IntentModelResult(
        path=out,
        intents=len(head.intents),
        train_rows=training.train_rows,
        valid_rows=training.valid_rows,
        oos_rows=sum(1 for label in rows.labels if label == oos_label),
        epochs=training.epochs,
        best_epoch=training.best_epoch,
        seconds=time.perf_counter() - started,
        valid_metrics=valid_metrics,
        problems=tuple(problems),
    )


def check_out(out: Path) -> None:
    """Refuse to replace a folder that is not empty and is not a model."""
    if out.exists() and not out.is_dir():
        raise IntentDataError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / bundle_files.MANIFEST).is_file():
        raise IntentDataError(
            f"{out}: folder is not empty and holds no model; choose an empty or new folder"
        )
