"""``frontdesk intents eval``: a model bundle + labelled rows -> metrics and a report.

Runs the model the way the server does (the bundle loaded by ``Bundle.load``: its ONNX
encoder, int8 where the server's setting asks for it, and its calibrated head with its
thresholds); needs no torch.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

from retrieval.bundle import Bundle
from retrieval.intent_head import IntentHead
from training.evaluation import Predictions, metrics, predictions
from training.intent_data import IntentRows, RowProblem, read_intent_rows
from training.report import write_report

REPORTS_DIR = "reports"
VALIDATION_REPORT = "validation"
"""The report training writes of its validation rows."""

log = logging.getLogger(__name__)


def evaluate_model(
    model: Path | Bundle, test: Path, *, report_name: str | None = None
) -> tuple[dict[str, float | int | None], tuple[RowProblem, ...]]:
    """Metrics of ``model`` on the rows of ``test`` and the rows skipped as malformed;
    writes ``<bundle folder>/reports/<name>/``. ``model``: a bundle loaded as the server
    loads it (``frontdesk intents eval``: ``retrieval.registry.resolve_model``, the
    server's int8 setting), or a bundle folder, loaded fp32."""
    rows = read_intent_rows(test)
    name = report_name or _name(test)
    if report_name is None and name.casefold() == VALIDATION_REPORT:  # training's stays
        name = f"{name}-test"
    return evaluate_rows(model, rows, report_name=name), rows.problems


def evaluate_rows(
    model: Path | Bundle,
    rows: IntentRows,
    *,
    report_name: str,
    model_name: str | None = None,
    head: IntentHead | None = None,
) -> dict[str, float | int | None]:
    """``model``: a loaded bundle or its folder (loaded fp32); ``model_name``: what the
    report calls the model (the folder's name unless given: training evaluates a model
    still in its staging folder); ``head``: scored in place of the bundle's (training's
    report of a head before its refit)."""
    bundle = model if isinstance(model, Bundle) else Bundle.load(model)
    head = bundle.head if head is None else head
    p = served_predictions(bundle, rows, head)
    numbers = metrics(p)
    write_report(
        bundle.path / REPORTS_DIR / report_name,
        p,
        numbers,
        title=f"Intent model {model_name or bundle.path.name} on {report_name}",
        threshold=head.threshold,
    )
    return numbers


def served_predictions(
    bundle: Bundle, rows: IntentRows, head: IntentHead | None = None
) -> Predictions:
    """The predictions of ``bundle`` for ``rows``, computed as the server computes them
    (``Bundle.predict_intents``: the encoder, then the head); ``head`` in place of the
    bundle's. Rows of intents the head does not know are named in a warning."""
    head = bundle.head if head is None else head
    oos_label = head.oos_label or str(bundle.manifest.get("oos_label") or "oos")
    unseen = Counter(y for y in rows.labels if y != oos_label and y not in head.intents)
    if unseen:
        shown = ", ".join(f"{name} ({n})" for name, n in unseen.most_common(5))
        log.warning(
            "%d test rows carry intents the model was not trained on: %s%s; they count "
            "as wrong (label them `%s` to score them as out of scope)",
            unseen.total(), shown, ", ..." if len(unseen) > 5 else "", oos_label,
        )  # fmt: skip
    probs, oos = head.predict(bundle.encoder.encode(rows.texts))
    return predictions(rows.labels, head.intents, probs, oos, oos_label)


def _name(test: Path) -> str:
    stem = test.stem if test.is_file() else test.name
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in stem) or "test"
