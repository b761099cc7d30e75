"""The evaluation report written next to a model: a Markdown page with the metrics, the
worst intents and the most confused pairs, and two plots (reliability diagram; confidence
histograms for in-scope vs out-of-scope rows)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes

from training.calibration import ReliabilityBins, reliability
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
        lines.append(f"| {key} | {fmt_number(value)} |")
    lines.append(f"| oos_auroc | {fmt_number(auroc)} |")
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


def fmt_number(value: float | int | None) -> str:
    """A report's number: an int as it is, a float with 4 decimals, None as ``n/a``."""
    if value is None:
        return "n/a"
    if isinstance(value, int):
        return str(value)
    return f"{value:.4f}"


def _reliability_plot(path: Path, p: Predictions) -> None:
    in_scope = ~p.is_oos
    fig, ax = plt.subplots(figsize=(5, 5))
    draw_reliability(
        ax,
        p.confidence[in_scope],
        p.intent_right[in_scope],
        title="Reliability, in-scope rows",
        xlabel="confidence (highest in-scope probability)",
        ylabel="accuracy of the predicted intent",
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def draw_reliability(
    ax: Axes,
    confidence: npt.NDArray[np.float32],
    correct: npt.NDArray[np.bool_],
    *,
    title: str,
    xlabel: str,
    ylabel: str = "accuracy",
) -> ReliabilityBins:
    """A reliability diagram on ``ax``: the accuracy of each equal-width confidence bin
    (:func:`training.calibration.reliability`) against the diagonal of perfect
    calibration, each bar labelled with its number of rows. Returns the bins."""
    rel = reliability(confidence, correct)
    centers = (rel.edges[:-1] + rel.edges[1:]) / 2
    width = rel.edges[1] - rel.edges[0]
    used = rel.counts > 0
    label = "accuracy (on top: rows in the bin)"
    bars = ax.bar(
        centers[used], rel.accuracy[used], width=width * 0.9, label=label, color="#4c72b0"
    )
    box = {"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 0.5}
    counts = [str(n) for n in rel.counts[used]]
    ax.bar_label(bars, labels=counts, fontsize=7, padding=2, bbox=box, zorder=5)
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.08)
    legend(ax)
    return rel


def legend(ax: Axes, handles: list[Any] | None = None, labels: list[str] | None = None) -> None:
    """The legend of ``ax`` under its x-axis label, where it hides no bar or line."""
    if handles is None or labels is None:
        handles, labels = ax.get_legend_handles_labels()
    ax.legend(
        handles,
        labels,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.14),
        ncol=2,
        fontsize=8,
        frameon=False,
    )


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
