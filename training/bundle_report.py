"""The training report every bundle of ``frontdesk train`` carries: ``reports/training.md``
and its plots, ``reports/training.png``, written into the bundle before it is published.

What it shows:

- the curves of both objectives of the one encoder (``training.joint``): the intents'
  loss and validation accuracy per epoch, and the ranking of past replies' loss and
  held-out recall@1 per epoch when its loop drove (before / after when it rode along the
  intents' loop); an objective that was not trained says why instead;
- the intents on the validation rows: accuracy, ECE (``training.evaluation``) and a
  reliability diagram with its bins' row counts;
- recall@1/5/10 and MRR of past replies on the conversations the encoder was not trained
  on, scored as ``frontdesk dialogues eval`` scores (``training.dialogue_eval``), each
  conversation left out of the index while it is scored;
- the fitted past-reply calibration, its threshold and the threshold served, with a
  reliability diagram of the calibration's cases.

Everything is scored through the bundle as the server loads it (``Bundle.load``: the ONNX
encoder, fp32 as served by default, the head, the index and the reply calibration).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes
from matplotlib.ticker import MaxNLocator

from bot.types import BotDefinition
from retrieval.bundle import Bundle
from retrieval.chatlog import ChatLog, TurnRole
from retrieval.index import IndexedTurn
from training.args import TrainingArguments
from training.calibration import expected_calibration_error, reliability
from training.dialogue_eval import ranking_cases, ranking_metrics, ranks, score_served
from training.dialogue_model import redaction_of
from training.errors import TrainingError
from training.evaluation import metrics
from training.intent_data import IntentRows
from training.intent_eval import REPORTS_DIR, served_predictions
from training.intents import EpochRecord, IntentTraining
from training.pipeline import paraphrases_of, served_reply_threshold
from training.ranker import MIN_VALID_CASES
from training.reply_calibration import MIN_CASES, calibration_cases
from training.report import draw_reliability, fmt_number, legend

log = logging.getLogger(__name__)

TRAINING_MD = "training.md"
TRAINING_PNG = "training.png"
MAX_RANKING_CASES = 2_000
"""Held-out ranking cases scored at most (whole conversations drawn at random, seed 0):
each one encodes its context and its share of the 100 candidates."""

Panel = Callable[[Axes], None]
LOSS_COLOR = "#4c72b0"
VALID_COLOR = "#dd8452"


def write_bundle_report(
    folder: Path,
    *,
    definition: BotDefinition,
    args: TrainingArguments,
    intents: IntentTraining,
    logs: Sequence[ChatLog],
    pairs: Sequence[IndexedTurn],
    held_out: Collection[str],
) -> Path | None:
    """Write ``reports/training.md`` and ``reports/training.png`` into the bundle staged in
    ``folder`` (complete but for them); return the page's path inside the bundle folder.

    ``intents``: what the intents' training did; ``logs`` and their redacted ``pairs``: the
    chat logs the index was built from; ``held_out``: the ids of the conversations the
    encoder was not trained on (the ones the reply calibration was fitted on). The ranking
    objective's record is the manifest's ``ranker``. A report that cannot be written is
    logged and None returned: the model is published all the same."""
    started = time.perf_counter()
    try:
        page = _write(folder, definition, args, intents, logs, pairs, held_out)
    except Exception:
        log.exception("the training report could not be written")
        return None
    log.info("training report written in %.1f s", time.perf_counter() - started)
    return page.relative_to(folder)


def _write(
    folder: Path,
    definition: BotDefinition,
    args: TrainingArguments,
    intents: IntentTraining,
    logs: Sequence[ChatLog],
    pairs: Sequence[IndexedTurn],
    held_out: Collection[str],
) -> Path:
    bundle = Bundle.load(folder)  # as the server loads it (fp32, its default)
    manifest = bundle.manifest
    out = folder / REPORTS_DIR
    out.mkdir(parents=True, exist_ok=True)
    panels: list[Panel] = []  # the sections' plots, drawn into one figure
    sections = [
        *_intent_training(args, intents, manifest, panels),
        *_ranker_training(manifest, logs, panels),
        *_intent_validation(bundle, intents, panels),
        *_held_out_ranking(bundle, logs, held_out, manifest),
        *_reply_calibration(bundle, definition, pairs, held_out, panels),
    ]
    figure = ["No plots: nothing below could be drawn (each section says why).", ""]
    if panels:
        _plot(out / TRAINING_PNG, panels)
        figure = [f"![training curves and reliability diagrams]({TRAINING_PNG})", ""]
    page = out / TRAINING_MD
    lines = [*_header(definition, manifest, logs, bundle), *figure, *sections]
    page.write_text("\n".join(lines), encoding="utf-8")
    return page


def _header(
    definition: BotDefinition, manifest: Mapping[str, Any], logs: Sequence[ChatLog], bundle: Bundle
) -> list[str]:
    return [
        f"# Training report: {definition.name}",
        "",
        f"Trained {manifest.get('created_at', '?')} on {manifest.get('device', '?')} "
        f"({manifest.get('precision', '?')} arithmetic): {len(bundle.head.intents)} intents from "
        f"{manifest.get('examples', '?')} examples; {len(logs)} conversations, "
        f"{len(bundle.index)} dialogue turns indexed ({bundle.context_encoding.mode} context "
        f"windows). Scored through the bundle as the server loads it ({bundle.precision} "
        "encoder).",
        "",
    ]


# -- the two objectives' training ------------------------------------------------------


def _intent_training(
    args: TrainingArguments,
    intents: IntentTraining,
    manifest: Mapping[str, Any],
    panels: list[Panel],
) -> list[str]:
    lines = ["## Intents: training", ""]
    history = intents.history
    if not history:
        refit = (
            "; once they had set its temperature and thresholds, it was fitted again with the "
            "validation rows too"
            if intents.validated_head is not None
            else ""
        )
        lines += [
            f"The encoder was not fine-tuned for the intents: {_why_head_alone(args, intents)}. "
            f"The intent head was fitted alone to it ({args.probe_steps} full-batch steps"
            f"{refit}), so there are no per-epoch curves.",
            "",
        ]
        return lines
    ranker = manifest.get("ranker") or {}
    along = (
        " Each step also took one batch of the chat logs' ranking loss (the ranking "
        "objective rode along), which the loss includes."
        if ranker.get("driver") == "intents" and ranker.get("trained")
        else ""
    )
    members = len({r.member for r in history})
    soup = f", a soup of {members} models (the best epoch is the first's)" if members > 1 else ""
    lines += [
        f"Fine-tuned for {intents.epochs} epochs at most (early stopping), batches of "
        f"{intents.batch_size}, on {intents.train_rows} rows with {intents.valid_rows} "
        f"validation rows; best epoch {intents.best_epoch}{soup}.{along}",
        "",
        "| epoch | loss | valid accuracy | seconds |" + (" model |" if members > 1 else ""),
        "|---|---|---|---|" + ("---|" if members > 1 else ""),
    ]
    for r in history:
        model = f" {r.member + 1} |" if members > 1 else ""
        lines.append(
            f"| {r.epoch} | {r.loss:.4f} | {fmt_number(r.valid_accuracy)} | {r.seconds:.1f} |"
            + model
        )
    lines.append("")
    panels.append(lambda ax: _intent_curves(ax, history, intents.best_epoch))
    return lines


def _why_head_alone(args: TrainingArguments, intents: IntentTraining) -> str:
    if args.epochs == 0:
        return "0 epochs were asked for (`--epochs 0`)"
    n = len(intents.head.intents)
    reasons = []
    if intents.train_rows < args.fine_tune_min_rows * n:
        reasons.append(
            f"{intents.train_rows} training rows for {n} intents, "
            f"{intents.train_rows / max(1, n):.1f} an intent (fine-tuning takes "
            f"{args.fine_tune_min_rows})"
        )
    if intents.valid_rows < args.fine_tune_min_valid_rows:
        reasons.append(
            f"{intents.valid_rows} validation rows (fine-tuning takes "
            f"{args.fine_tune_min_valid_rows})"
        )
    return "few examples: " + " and ".join(reasons) if reasons else "no epochs planned"


def _ranker_training(
    manifest: Mapping[str, Any], logs: Sequence[ChatLog], panels: list[Panel]
) -> list[str]:
    lines = ["## Ranking of past replies: training", ""]
    ranker: Mapping[str, Any] = manifest.get("ranker") or {}
    history: list[Mapping[str, Any]] = list(ranker.get("history") or [])
    best = ranker.get("best_epoch")
    if not logs:
        return [
            *lines,
            "Not trained: no chat logs (`dialogues.jsonl` in the bot folder, or `--logs`).",
            "",
        ]
    if ranker.get("note"):
        return [*lines, f"Not trained: {ranker['note']}.", ""]
    if not ranker.get("trained"):
        asked = (manifest.get("training_args") or {}).get("ranker_epochs") == 0
        why = "0 ranker epochs were asked for" if asked else "the ranking objective did not run"
        return [
            *lines,
            f"Not trained: {why}; the logs were indexed with the encoder the intents left.",
            "",
        ]
    pairs = ranker.get("train_pairs", 0)
    valid = ranker.get("valid_conversations", 0)
    if ranker.get("driver") == "intents":
        lines.append(
            f"The intents' loop drove; ranking was an auxiliary objective (one batch of the "
            f"logs' {pairs} training pairs added to each of its steps), so it has no loss "
            "curve of its own (the intents' loss includes it)."
        )
        if len(history) == 2:
            before, after = (float(h["valid_recall_at_1"]) for h in history)
            lines += [
                f"Recall@1 on the {valid} conversations held out from it, 1 of 100: "
                f"{before:.4f} with the base encoder, {after:.4f} after training (epoch "
                f"{history[1]['epoch']}).",
                "",
                "| encoder | valid recall@1 |",
                "|---|---|",
                f"| base | {before:.4f} |",
                f"| trained (epoch {history[1]['epoch']}) | {after:.4f} |",
            ]
            panels.append(lambda ax: _before_after(ax, before, after, int(history[1]["epoch"])))
        else:
            lines.append(
                "No conversations were held out of it (they would have given fewer than "
                f"{MIN_VALID_CASES} cases), so its recall@1 before and after was not measured."
            )
        return [*lines, ""]
    held = (
        f"the {valid} conversations held out from it pick the best epoch (recall@1, 1 of "
        "100; epoch 0: the base encoder)"
        if valid
        else "no conversations were held out (they would have given fewer than "
        f"{MIN_VALID_CASES} cases), so the last epoch is kept"
    )
    lines += [
        f"The ranker's loop drove, on {pairs} (context, reply) pairs, each step with one batch "
        f"of the intents' loss (auxiliary); {held}. Best epoch: {best}"
        + (" (the base encoder was kept)." if best == 0 else "."),
        "",
        "| epoch | loss | valid recall@1 | seconds |",
        "|---|---|---|---|",
    ]
    for h in history:
        lines.append(
            f"| {h['epoch']} | {fmt_number(h['loss'])} | "
            f"{fmt_number(h['valid_recall_at_1'])} | {float(h['seconds']):.1f} |"
        )
    panels.append(lambda ax: _ranker_curves(ax, history, best))
    return [*lines, ""]


# -- intents on the validation rows ---------------------------------------------------


def _intent_validation(bundle: Bundle, intents: IntentTraining, panels: list[Panel]) -> list[str]:
    lines = ["## Intents on the validation rows", ""]
    if not intents.valid_rows:
        return [
            *lines,
            "No validation rows: no intent has the 5 examples a share of them "
            "is held out from; the out-of-scope threshold was set on the training rows.",
            "",
        ]
    head = bundle.head
    refitted = intents.validated_head is not None
    p = served_predictions(
        bundle, IntentRows(intents.valid_texts, intents.valid_labels), intents.validated_head
    )
    numbers = metrics(p)
    if refitted:
        lines += [
            "Scored with the head as it was before it was fitted again with these rows (same "
            "encoder, temperature and thresholds): the head served has learnt from them, so "
            "its own figures here would flatter it.",
            "",
        ]
    lines += ["| metric | value |", "|---|---|"]
    lines += [f"| {key} | {fmt_number(value)} |" for key, value in numbers.items()]
    lines += [
        f"| rejected as out of scope | {int(p.rejected.sum())} |",
        f"| temperature | {head.temperature:.4f} |",
        f"| out-of-scope threshold (in-scope confidence) | {head.threshold:.4f} |",
        f"| similarity guard (min_similarity) | {head.min_similarity:.4f} |",
        "",
    ]
    in_scope = ~p.is_oos
    confidence, right = p.confidence[in_scope], p.intent_right[in_scope]
    if confidence.size:
        lines += _reliability_lines(
            "Reliability of the highest in-scope probability (in-scope rows)",
            confidence,
            right,
        )
        panels.append(
            lambda ax: _reliability_panel(
                ax,
                confidence,
                right,
                title=f"Intents: validation rows (ECE {numbers['ece'] or 0:.3f})",
                xlabel="confidence (highest in-scope probability)",
                ylabel="accuracy of the predicted intent",
            )
        )
    return lines


# -- past replies ------------------------------------------------------------------------


def _held_out_ranking(
    bundle: Bundle,
    logs: Sequence[ChatLog],
    held_out: Collection[str],
    manifest: Mapping[str, Any],
) -> list[str]:
    lines = ["## Past replies on held-out conversations", ""]
    if not logs:
        return [*lines, "Skipped: no chat logs.", ""]
    held = [c for c in logs if c.id in held_out]
    everyone = len(held) == len(logs)
    trained_on_logs = bool((manifest.get("ranker") or {}).get("trained"))
    sample = _sample(held, MAX_RANKING_CASES)
    if everyone:
        which = f"all {len(logs)} conversations"
        which += (
            " (none could be held out of the encoder's training, which saw them all: they "
            "are held out of the index only)"
            if trained_on_logs
            else " (the encoder was not trained on the chat logs)"
        )
    else:
        which = f"the {len(held)} of {len(logs)} conversations held out from the encoder's training"
    if len(sample) < len(held):
        which += f", {len(sample)} of them drawn at random (at most {MAX_RANKING_CASES} cases)"
    try:
        cases = ranking_cases(sample, redact=redaction_of(bundle), redact_contexts=False)
    except TrainingError as exc:
        return [*lines, f"Skipped: {exc}.", ""]
    numbers = ranking_metrics(ranks(score_served(bundle, cases, leave_out_own=True)))
    lines += [
        f"On {which}: every agent turn after a customer turn ranks its true reply among up "
        "to 99 replies drawn from the other conversations' agent turns, scored as "
        "`frontdesk dialogues eval` scores (the served encoder, index and reply "
        "calibration), with the conversation's own turns left out of the index "
        "(leave-one-conversation-out).",
        "",
        "| metric | value |",
        "|---|---|",
        *(f"| {key} | {fmt_number(value)} |" for key, value in numbers.items()),
        "",
    ]
    return lines


def _sample(logs: Sequence[ChatLog], cases: int) -> list[ChatLog]:
    """Conversations in a random order (seed 0) until they give about ``cases`` agent turns;
    all when they give fewer. Kept in their order."""
    turns = [sum(t.role is TurnRole.AGENT for t in c.turns) for c in logs]
    if sum(turns) <= cases:
        return list(logs)
    taken: list[int] = []
    total = 0
    for i in np.random.default_rng(0).permutation(len(logs)).tolist():
        if total >= cases:
            break
        taken.append(i)
        total += turns[i]
    return [logs[i] for i in sorted(taken)]


def _reply_calibration(
    bundle: Bundle,
    definition: BotDefinition,
    pairs: Sequence[IndexedTurn],
    held_out: Collection[str],
    panels: list[Panel],
) -> list[str]:
    calibration = bundle.reply_calibration
    served = served_reply_threshold(definition, calibration)
    if definition.thresholds.retrieval is not None:
        source = "bot.yml `thresholds.retrieval`"
    elif calibration.threshold is not None:
        source = "fitted in training"
    else:
        source = "the engine's default (nothing fitted)"
    fitted = calibration.fitted_on > 0
    lines = [
        "## Past-reply calibration",
        "",
        "A retrieved reply's score, weight x context similarity + (1 - weight) x reply "
        "similarity, becomes the probability that it is right: sigmoid(slope x score + "
        "intercept), fitted on held-out conversations (each left out of the index) and on "
        "the bot's own examples.",
        "",
        "| parameter | value |",
        "|---|---|",
        f"| weight | {calibration.weight:g} |",
        f"| slope | {calibration.slope:.4f} |",
        f"| intercept | {calibration.intercept:.4f} |",
        f"| cases | {calibration.fitted_on} |",
        "| threshold (fitted) | "
        + (f"{calibration.threshold:g}" if calibration.threshold is not None else "not fitted")
        + " |",
        f"| threshold (served) | {served:g} |",
        f"| served threshold from | {source} |",
        "",
    ]
    if not fitted:
        return [
            *lines,
            f"Not fitted (defaults): fewer than {MIN_CASES} cases, or they were "
            "all right or all wrong.",
            "",
        ]
    cases = calibration_cases(
        bundle.encoder,
        bundle.index,
        pairs,
        held_out,
        bundle.context_encoding,
        paraphrases_of(definition),
    )
    if calibration.weight not in cases:
        return lines
    scores, right = cases[calibration.weight]
    probability = calibration.probability(scores.astype(np.float32))
    ece = expected_calibration_error(probability, right)
    lines += _reliability_lines(
        f"Reliability of the top reply's probability on the calibration's {right.size} cases "
        f"(recomputed through the served bundle; ECE {ece:.4f})",
        probability,
        right,
    )
    panels.append(
        lambda ax: _reliability_panel(
            ax,
            probability,
            right,
            title=f"Past replies: calibration cases (ECE {ece:.3f})",
            xlabel="probability of the top reply",
            ylabel="share right",
            threshold=served,
        )
    )
    return lines


# -- tables and plots ----------------------------------------------------------------------


def _reliability_lines(
    title: str, confidence: npt.NDArray[np.float32], right: npt.NDArray[np.bool_]
) -> list[str]:
    """The reliability diagram's bins as a table (the rows of the empty ones left out)."""
    rel = reliability(confidence, right)
    lines = [f"{title}:", "", "| bin | rows | mean confidence | accuracy |", "|---|---|---|---|"]
    for i in np.flatnonzero(rel.counts):
        lines.append(
            f"| {rel.edges[i]:.2f}-{rel.edges[i + 1]:.2f} | {rel.counts[i]} | "
            f"{rel.confidence[i]:.3f} | {rel.accuracy[i]:.3f} |"
        )
    return [*lines, ""]


def _reliability_panel(
    ax: Axes,
    confidence: npt.NDArray[np.float32],
    right: npt.NDArray[np.bool_],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    threshold: float | None = None,
) -> None:
    draw_reliability(ax, confidence, right, title=title, xlabel=xlabel, ylabel=ylabel)
    if threshold is not None:
        ax.axvline(threshold, color="black", linestyle=":", label=f"served threshold {threshold:g}")
        legend(ax)


def _intent_curves(ax: Axes, history: Sequence[EpochRecord], best_epoch: int) -> None:
    valid = ax.twinx() if any(r.valid_accuracy is not None for r in history) else None
    members = sorted({r.member for r in history})
    for member in members:
        name = f" (model {member + 1})" if len(members) > 1 else ""
        style = "-" if member == 0 else ":"
        rows = [r for r in history if r.member == member]
        ax.plot(
            [r.epoch for r in rows],
            [r.loss for r in rows],
            "o" + style,
            color=LOSS_COLOR,
            label=f"training loss{name}",
        )
        points = [
            (r.epoch, accuracy)
            for r in history
            if r.member == member and (accuracy := r.valid_accuracy) is not None
        ]
        if valid is not None:
            valid.plot(
                [epoch for epoch, _ in points],
                [accuracy for _, accuracy in points],
                "s" + style,
                color=VALID_COLOR,
                label=f"valid accuracy{name}",
            )
    _epoch_axes(ax, valid, best_epoch, "Intents: loss and validation accuracy", "valid accuracy")


def _ranker_curves(ax: Axes, history: Sequence[Mapping[str, Any]], best_epoch: int | None) -> None:
    trained = [h for h in history if h["loss"] is not None]
    ax.plot(
        [h["epoch"] for h in trained],
        [h["loss"] for h in trained],
        "o-",
        color=LOSS_COLOR,
        label="training loss",
    )
    scored = [h for h in history if h["valid_recall_at_1"] is not None]
    valid = ax.twinx() if scored else None
    if valid is not None:
        valid.plot(
            [h["epoch"] for h in scored],
            [h["valid_recall_at_1"] for h in scored],
            "s-",
            color=VALID_COLOR,
            label="held-out recall@1 (0: base encoder)",
        )
    _epoch_axes(ax, valid, best_epoch, "Past replies: loss and held-out recall@1", "recall@1")


def _epoch_axes(
    ax: Axes, valid: Axes | None, best_epoch: int | None, title: str, valid_label: str
) -> None:
    """Labels, integer epochs, the best epoch marked, one legend for both y axes."""
    if best_epoch is not None:
        ax.axvline(best_epoch, color="grey", linestyle="--", label=f"best epoch ({best_epoch})")
    ax.set_title(title)
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss", color=LOSS_COLOR)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    handles, labels = ax.get_legend_handles_labels()
    if valid is not None:
        valid.set_ylabel(valid_label, color=VALID_COLOR)
        valid.set_ylim(0, 1.02)
        more, more_labels = valid.get_legend_handles_labels()
        handles, labels = handles + more, labels + more_labels
    legend(ax, handles, labels)


def _before_after(ax: Axes, before: float, after: float, epoch: int) -> None:
    bars = ax.bar(
        ["base encoder", f"trained (epoch {epoch})"],
        [before, after],
        color=[LOSS_COLOR, VALID_COLOR],
        width=0.5,
    )
    ax.bar_label(bars, labels=[f"{before:.3f}", f"{after:.3f}"], padding=2)
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("held-out recall@1")
    ax.set_title("Past replies: ranking rode along the intents' loop")


def _plot(path: Path, panels: Sequence[Panel]) -> None:
    columns = min(2, len(panels))
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(6.2 * columns, 4.6 * rows), squeeze=False)
    for ax, panel in zip(axes.flat, panels, strict=False):
        panel(ax)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
