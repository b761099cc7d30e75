"""``frontdesk intents eval``: a model folder + labelled rows -> metrics and a report.

Runs the model the way the server does (ONNX encoder, calibrated head); needs no torch.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

from retrieval.bundle import MANIFEST, Bundle
from retrieval.intent_head import IntentHead
from retrieval.registry import POINTER, Registry
from training.evaluation import metrics, predictions
from training.intent_data import IntentDataError, IntentRows, RowProblem, read_intent_rows
from training.report import write_report

REPORTS_DIR = "reports"
VALIDATION_REPORT = "validation"
"""The report training writes of its validation rows."""

log = logging.getLogger(__name__)


def evaluate_model(
    model: Path, test: Path, *, report_name: str | None = None
) -> tuple[dict[str, float | int | None], tuple[RowProblem, ...]]:
    """Metrics of ``model`` (a bundle folder: :func:`model_folder`) on the rows of
    ``test`` and the rows skipped as malformed; writes ``model/reports/<name>/``."""
    rows = read_intent_rows(test)
    name = report_name or _name(test)
    if report_name is None and name.casefold() == VALIDATION_REPORT:  # training's stays
        name = f"{name}-test"
    return evaluate_rows(model, rows, report_name=name), rows.problems


def model_folder(path: Path) -> Path:
    """The bundle folder ``path`` names: itself, or the current version when it is a
    registry's ``current`` pointer or the models folder holding one; checked before any
    test rows are read."""
    if (path.is_file() and path.name == POINTER) or (path / POINTER).is_file():
        registry = Registry(path.parent if path.is_file() else path)
        current = registry.current_path()
        if current is not None:
            return current
    if not (path / MANIFEST).is_file():
        raise IntentDataError(
            f"{path}: not a model folder (no {MANIFEST}); expected a folder written by "
            "`frontdesk intents train --out`, or a home's models/<version> or models/current"
        )
    return path


def evaluate_rows(
    model: Path,
    rows: IntentRows,
    *,
    report_name: str,
    model_name: str | None = None,
    head: IntentHead | None = None,
) -> dict[str, float | int | None]:
    """``model_name``: what the report calls the model (``model``'s folder name unless
    given: training evaluates a model still in its staging folder); ``head``: scored in
    place of the bundle's (training's report of a head before its refit)."""
    bundle = Bundle.load(model)
    if head is not None:
        bundle.head = head
    head = bundle.head
    oos_label = head.oos_label or str(bundle.manifest.get("oos_label") or "oos")
    unseen = Counter(y for y in rows.labels if y != oos_label and y not in head.intents)
    if unseen:
        shown = ", ".join(f"{name} ({n})" for name, n in unseen.most_common(5))
        log.warning(
            "%d test rows carry intents the model was not trained on: %s%s; they count "
            "as wrong (label them `%s` to score them as out of scope)",
            unseen.total(), shown, ", ..." if len(unseen) > 5 else "", oos_label,
        )  # fmt: skip
    probs, oos = bundle.predict_intents(rows.texts)
    p = predictions(rows.labels, head.intents, probs, oos, oos_label)
    numbers = metrics(p)
    write_report(
        model / REPORTS_DIR / report_name,
        p,
        numbers,
        title=f"Intent model {model_name or model.name} on {report_name}",
        threshold=head.threshold,
    )
    return numbers


def _name(test: Path) -> str:
    stem = test.stem if test.is_file() else test.name
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in stem) or "test"
