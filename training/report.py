"""The evaluation report written next to a model: a Markdown page with the metrics, the
worst intents and the most confused pairs, and two plots (reliability diagram; confidence
histograms for in-scope vs out-of-scope rows)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from training.calibration import reliability
from training.evaluation import (
    REJECTED,
    Predictions,
    confused_pairs,
    oos_auroc,
    worst_intents,
)

RELIABILITY_PNG = "reliability.png"
CONFIDENCE_PNG = "confidence.png"
REPORT_MD = "report.md"


def write_report(
    folder: Path,
    p: Predictions,
    numbers: Mapping[str, float | int | None],
    *,
    title: str,
    threshold: float,
) -> Path:
    """Write the page and its plots into ``folder``; returns the page's path."""
    folder.mkdir(parents=True, exist_ok=True)
    _reliability_plot(folder / RELIABILITY_PNG, p)
    _confidence_plot(folder / CONFIDENCE_PNG, p, threshold)
    auroc = oos_auroc(p)
    lines = [f"# {title}", "", "| metric | value |", "|---|---|"]
    for key, value in numbers.items():
        lines.append(f"| {key} | {_fmt(value)} |")
    lines.append(f"| oos_auroc | {_fmt(auroc)} |")
    lines.append(f"| threshold (in-scope confidence) | {threshold:.4f} |")
    lines += ["", "## Worst intents", "", "| intent | rows | F1 | recall |", "|---|---|---|---|"]
    for row in worst_intents(p):
        lines.append(f"| {row.intent} | {row.support} | {row.f1:.3f} | {row.recall:.3f} |")
    mistakes = confused_pairs(p, k=len(p.truth))
    swaps = [m for m in mistakes if m[1] != REJECTED][:10]
    rejected = [m for m in mistakes if m[1] == REJECTED][:10]
    lines += ["", "## Most confused pairs", "", "| true | predicted | rows |", "|---|---|---|"]
    lines += [f"| {truth} | {predicted} | {count} |" for truth, predicted, count in swaps]
    lines += ["", "## Most rejected as out of scope", "", "| true | rows |", "|---|---|"]
    lines += [f"| {truth} | {count} |" for truth, _, count in rejected]
    lines += [
        "",
        "## Calibration",
        "",
        f"![reliability diagram]({RELIABILITY_PNG})",
        "",
        f"![confidence histograms]({CONFIDENCE_PNG})",
        "",
    ]
    path = folder / REPORT_MD
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _fmt(value: float | int | None) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, int):
        return str(value)
    return f"{value:.4f}"


def _reliability_plot(path: Path, p: Predictions) -> None:
    in_scope = ~p.is_oos
    right = np.asarray([i == t for i, t in zip(p.intent, p.truth, strict=True)], dtype=bool)
    rel = reliability(p.confidence[in_scope], right[in_scope])
    centers = (rel.edges[:-1] + rel.edges[1:]) / 2
    width = rel.edges[1] - rel.edges[0]
    fig, ax = plt.subplots(figsize=(5, 5))
    used = rel.counts > 0
    ax.bar(centers[used], rel.accuracy[used], width=width * 0.9, label="accuracy", color="#4c72b0")
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    ax.set_xlabel("confidence (highest in-scope probability)")
    ax.set_ylabel("accuracy of the predicted intent")
    ax.set_title("Reliability, in-scope rows")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _confidence_plot(path: Path, p: Predictions, threshold: float) -> None:
    is_oos = p.is_oos
    bins = [i / 30 for i in range(31)]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(p.confidence[~is_oos], bins=bins, alpha=0.6, label="in-scope", density=True)
    if is_oos.any():
        ax.hist(p.confidence[is_oos], bins=bins, alpha=0.6, label="out-of-scope", density=True)
    ax.axvline(threshold, color="black", linestyle="--", label="rejection threshold")
    ax.set_xlabel("confidence (highest in-scope probability)")
    ax.set_ylabel("density")
    ax.set_title("Confidence, in-scope vs out-of-scope")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
