"""Every bundle `frontdesk train` publishes carries its training report: the curves of
both objectives, the intents on their validation rows, past replies on held-out
conversations, the reply calibration and its threshold, and reliability diagrams."""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import matplotlib.image
import numpy as np
import pytest

from bot.definition import load_bot
from channels.cli import main
from retrieval.bundle import MANIFEST, Bundle
from retrieval.chatlog import ChatLog, read_logs
from retrieval.index import DialogueIndex, IndexedTurn
from retrieval.pairs import dialogue_pairs
from retrieval.ranking import ReplyCalibration
from retrieval.redact import RedactionRules, Redactor
from retrieval.registry import Registry
from tests.conftest import SHOP
from training.args import TrainingArguments
from training.bundle_report import write_bundle_report
from training.dialogue_eval import RankingCase, ranking_cases, score_cases_with_index
from training.evaluation import metrics
from training.intent_data import IntentRows, definition_rows
from training.intent_eval import served_predictions
from training.intents import EpochRecord, IntentTraining, split_validation
from training.pipeline import TrainResult, served_reply_threshold

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SECTIONS = (
    "## Intents: training",
    "## Ranking of past replies: training",
    "## Intents on the validation rows",
    "## Past replies on held-out conversations",
    "## Past-reply calibration",
)


def value(page: str, key: str, occurrence: int = 0) -> str:
    """The value cell of the two-column table row ``| key | value |`` in ``page``."""
    found = re.findall(rf"^\| {re.escape(key)} \| ([^|]+) \|$", page, flags=re.MULTILINE)
    assert len(found) > occurrence, f"no row {key!r} in the report"
    return str(found[occurrence]).strip()


def bins(page: str) -> list[list[tuple[int, float, float]]]:
    """Each reliability table of ``page``: (rows, mean confidence, accuracy) per bin."""
    tables: list[list[tuple[int, float, float]]] = []
    for line in page.splitlines():
        if line.startswith("| bin | rows |"):
            tables.append([])
        elif tables and (
            row := re.match(r"^\| [\d.]+-[\d.]+ \| (\d+) \| ([\d.]+) \| ([\d.]+) \|$", line)
        ):
            tables[-1].append((int(row[1]), float(row[2]), float(row[3])))
    return tables


def assert_png(path: Path) -> tuple[int, int]:
    """A PNG that decodes; -> (width, height) in pixels."""
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    height, width, _ = matplotlib.image.imread(path).shape
    return width, height


def shop_logs() -> tuple[list[ChatLog], list[IndexedTurn]]:
    """The demo bot's conversations and their redacted pairs, as `train_bot` reads them."""
    definition = load_bot(SHOP)
    logs = read_logs(SHOP / "dialogues.jsonl").logs
    spec = definition.redaction
    redact = Redactor(RedactionRules(spec.order_number, spec.keep, spec.phone_region))
    return logs, dialogue_pairs(logs, redact=redact)


def test_the_published_bundle_carries_its_training_report(shop_home: Path) -> None:
    """The demo bundle (fine-tuned 4 epochs; its 71 pairs too few for the ranker): every
    section with the numbers of the bundle it describes."""
    current = Registry(shop_home / "models").current_path()
    assert current is not None
    page_path = current / "reports" / "training.md"
    page = page_path.read_text(encoding="utf-8")
    manifest = json.loads((current / MANIFEST).read_text(encoding="utf-8"))
    width, height = assert_png(current / "reports" / "training.png")
    assert width > 1000 and height > 800  # 3 panels: intents' curves, 2 reliability diagrams
    assert "![training curves and reliability diagrams](training.png)" in page
    positions = [page.index(section) for section in SECTIONS]
    assert positions == sorted(positions)

    # the intents' curves: one row an epoch, as the manifest's history says
    assert manifest["epochs"] == 4 and manifest["history"]
    for epoch in manifest["history"]:
        assert f"| {epoch['epoch']} | {epoch['loss']:.4f} | {epoch['valid_accuracy']:.4f} |" in page
    assert f"best epoch {manifest['best_epoch']}" in page
    # the ranking objective was not trained, and the report says why
    note = manifest["ranker"]["note"]
    assert note and "too few" in note and f"Not trained: {note}." in page

    # the validation rows' figures are the served bundle's on the rows training held out
    args = TrainingArguments(**manifest["training_args"])
    texts, labels = definition_rows(load_bot(SHOP))
    _, valid = split_validation(labels, args.valid_fraction, args.seed)
    rows = IntentRows(tuple(texts[i] for i in valid), tuple(labels[i] for i in valid))
    assert not manifest["head_refitted"]  # fine-tuned: the served head is the validated one
    served = metrics(served_predictions(Bundle.load(current), rows))
    assert value(page, "n") == str(len(valid))
    assert value(page, "accuracy") == f"{served['accuracy']:.4f}"
    assert value(page, "ece") == f"{served['ece']:.4f}"
    intent_bins, reply_bins = bins(page)
    assert sum(count for count, _, _ in intent_bins) == len(valid)

    # past replies: every conversation held out in turn (none trained on)
    assert "On all 64 conversations (the encoder was not trained on the chat logs)" in page
    logs, _ = shop_logs()
    recall = [float(value(page, f"recall@{k}")) for k in (1, 5, 10)]
    assert 0 < recall[0] <= recall[1] <= recall[2] <= 1
    assert 0 < float(value(page, "mrr")) <= 1
    assert value(page, "n", 1) == str(len(ranking_cases(logs)))

    # the reply calibration and the threshold served: the manifest's
    calibration = manifest["reply_calibration"]
    assert value(page, "weight") == f"{calibration['weight']:g}"
    assert value(page, "slope") == f"{calibration['slope']:.4f}"
    assert value(page, "intercept") == f"{calibration['intercept']:.4f}"
    assert calibration["fitted_on"] > 0
    assert value(page, "cases") == str(calibration["fitted_on"])
    assert value(page, "threshold (fitted)") == f"{calibration['threshold']:g}"
    threshold = served_reply_threshold(load_bot(SHOP), ReplyCalibration.from_json(calibration))
    assert threshold == calibration["threshold"]  # the demo bot.yml leaves it to training
    assert value(page, "threshold (served)") == f"{threshold:g}"
    assert value(page, "served threshold from") == "fitted in training"
    # its reliability table covers the cases it was fitted on
    assert sum(count for count, _, _ in reply_bins) == calibration["fitted_on"]


TINY = """\
name: tiny
human_intent: human
thresholds: {retrieval: 0.62}
intents:
  hello: {examples: [hi, hello, hey there, good morning]}
  hours: {examples: [when are you open, opening hours, are you open on sunday, closing time]}
  human: {examples: [a person please, talk to a human, let me speak to an agent, real person]}
responses:
  utter_hello: [Hello from tiny!]
  utter_hours: [We are open 9 to 5.]
"""


def test_frontdesk_train_prints_the_report_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`frontdesk train` says where the report is, on its own line after the summary; a
    tiny bot's report says why each part it cannot measure is missing."""
    bot = tmp_path / "tiny"
    bot.mkdir()
    (bot / "bot.yml").write_text(TINY, encoding="utf-8")
    (bot / "dialogues.jsonl").write_text(
        '{"id": "d1", "started_at": "2026-01-01T10:00:00Z", "turns": ['
        '{"role": "customer", "text": "do you sell gift cards"}, '
        '{"role": "agent", "text": "Yes, in any amount from 10 euros."}]}\n',
        encoding="utf-8",
    )
    home = tmp_path / "home"
    assert main(["train", "--bot", str(bot), "--home", str(home), "--epochs", "0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("trained v0001"))
    assert lines[at].startswith("trained v0001: 3 intents")
    report = home / "models" / "v0001" / "reports" / "training.md"
    assert lines[at + 1] == f"report: {report}"  # then the gate's verdict
    assert lines[-1] == "gate: v0001 is the first model: current"
    page = report.read_text(encoding="utf-8")
    assert "The encoder was not fine-tuned for the intents: 0 epochs were asked for" in page
    assert "Not trained: 1 (context, reply) pairs are too few to fine-tune on" in page
    assert "No validation rows" in page  # 4 examples an intent: none held out
    assert "Skipped: no test cases" in page  # one conversation: no other replies to rank
    assert value(page, "threshold (fitted)") == "not fitted"
    assert value(page, "threshold (served)") == "0.62"
    assert value(page, "served threshold from") == "bot.yml `thresholds.retrieval`"
    assert "Not fitted (defaults)" in page
    assert "No plots: nothing below could be drawn" in page
    assert not (report.parent / "training.png").exists()


def test_train_json_includes_the_report(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`frontdesk train --json` gives the report's path as `report`."""
    import training.pipeline

    report = tmp_path / "models" / "v0001" / "reports" / "training.md"
    result = TrainResult("v0001", report.parents[1], 3, 12, 1, (), 1.0, 0, report=report)
    monkeypatch.setattr(training.pipeline, "train_bot", lambda *a, **k: result)
    assert main(["train", "--home", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["report"] == str(report)


@pytest.fixture
def bundle_copy(shop_home: Path, tmp_path: Path) -> Path:
    """The demo bundle's serving files, in a folder of this test's own."""
    current = Registry(shop_home / "models").current_path()
    assert current is not None
    skip = shutil.ignore_patterns("model.safetensors", "model.int8.onnx", "reports")
    return Path(shutil.copytree(current, tmp_path / "bundle", ignore=skip))


def _record(folder: Path, soup: bool) -> IntentTraining:
    """An intents' training record for the bundle in ``folder``: its head and the demo
    bot's validation rows, with a made-up history (two members of a soup when ``soup``)."""
    bundle = Bundle.load(folder)
    texts, labels = definition_rows(load_bot(SHOP))
    _, valid = split_validation(labels, 0.1, 13)
    history = [EpochRecord(1, 2.5, 0.80, 1.0), EpochRecord(2, 1.5, 0.90, 1.0)]
    if soup:
        history += [replace(r, member=1, loss=r.loss + 0.1) for r in history]
    return IntentTraining(
        bundle.head,
        tuple(history),
        2,
        285,
        2,
        16,
        tuple(texts[i] for i in valid),
        tuple(labels[i] for i in valid),
    )


def _with_ranker(folder: Path, ranker: dict[str, Any]) -> None:
    path = folder / MANIFEST
    manifest = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps({**manifest, "ranker": ranker}), encoding="utf-8")


def _epochs(*rows: tuple[int, float | None, float | None]) -> list[dict[str, Any]]:
    return [
        {"epoch": e, "loss": loss, "valid_recall_at_1": r, "seconds": 2.0} for e, loss, r in rows
    ]


def test_the_ranker_s_own_loop_shows_its_curves(bundle_copy: Path) -> None:
    """When the ranker's loop drove: its loss and held-out recall@1 epoch by epoch (epoch
    0: the base encoder); the conversations it held out are the ones scored."""
    history = _epochs((0, None, 0.2), (1, 3.0, 0.3), (2, 2.0, 0.35))
    _with_ranker(
        bundle_copy,
        {
            "driver": "ranker",
            "trained": True,
            "train_pairs": 250,
            "valid_conversations": 20,
            "best_epoch": 2,
            "history": history,
            "note": None,
        },
    )
    logs, pairs = shop_logs()
    held = {c.id for c in logs[:20]}
    page_path = write_bundle_report(
        bundle_copy,
        definition=load_bot(SHOP),
        args=TrainingArguments(),
        logs=logs,
        pairs=pairs,
        held_out=held,
        intents=_record(bundle_copy, soup=True),
    )
    assert page_path == Path("reports/training.md")
    page = (bundle_copy / page_path).read_text(encoding="utf-8")
    assert "The ranker's loop drove, on 250 (context, reply) pairs" in page
    assert "| 0 | n/a | 0.2000 | 2.0 |" in page and "| 2 | 2.0000 | 0.3500 | 2.0 |" in page
    assert "a soup of 2 models" in page and "| 2 | 1.6000 | 0.9000 | 1.0 | 2 |" in page
    assert "On the 20 of 64 conversations held out from the encoder's training" in page
    assert value(page, "n", 1) == str(len(ranking_cases(logs[:20])))
    _, height = assert_png(bundle_copy / "reports" / "training.png")
    assert height > 2 * 400  # two rows of panels: 2 curves, 2 reliability diagrams


def test_ranking_along_the_intents_loop_shows_before_and_after(bundle_copy: Path) -> None:
    history = _epochs((0, None, 0.25), (3, None, 0.4))
    _with_ranker(
        bundle_copy,
        {
            "driver": "intents",
            "trained": True,
            "train_pairs": 300,
            "valid_conversations": 15,
            "best_epoch": 3,
            "history": history,
            "note": None,
        },
    )
    logs, pairs = shop_logs()
    page_path = write_bundle_report(
        bundle_copy,
        definition=load_bot(SHOP),
        args=TrainingArguments(),
        logs=logs,
        pairs=pairs,
        held_out={c.id for c in logs},
        intents=_record(bundle_copy, soup=False),
    )
    assert page_path is not None
    page = (bundle_copy / page_path).read_text(encoding="utf-8")
    assert "The intents' loop drove; ranking was an auxiliary objective" in page
    assert "which the loss includes" in page  # the intents' loss carries the ranking batch
    assert value(page, "base") == "0.2500" and value(page, "trained (epoch 3)") == "0.4000"
    assert "which saw them all: they are held out of the index only" in page
    assert_png(bundle_copy / "reports" / "training.png")


def test_a_report_that_cannot_be_written_does_not_stop_the_training(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    logs, pairs = shop_logs()
    with caplog.at_level(logging.ERROR, logger="training.bundle_report"):
        page = write_bundle_report(
            tmp_path,
            definition=load_bot(SHOP),
            args=TrainingArguments(),
            logs=logs,
            pairs=pairs,
            held_out=set(),
            intents=None,
        )
    assert page is None
    assert "the training report could not be written" in caplog.text


class TableEncoder:
    dim = 4

    def __init__(self, table: dict[str, Sequence[float]]) -> None:
        self.table = {
            k: np.asarray(v, dtype=np.float32) / np.linalg.norm(v) for k, v in table.items()
        }

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        return np.stack([self.table[t] for t in texts])


def test_held_out_scoring_leaves_the_case_s_own_conversation_out_of_the_index() -> None:
    """A conversation the index holds finds its own moment (its very context, with its
    true reply) unless it is left out; then the evidence is the nearest other ones."""
    encoder = TableEncoder(
        {
            "ctx a": [1, 0, 0, 0],
            "ctx b": [0.9, 0.3, 0, 0],
            "reply a": [0, 0, 1, 0],
            "reply b": [0, 0, 0, 1],
        }
    )
    index = DialogueIndex(encoder.dim)
    items = [IndexedTurn("a", 1, "ctx a", "reply a", 0), IndexedTurn("b", 1, "ctx b", "reply b", 1)]
    index.add(items, encoder.encode(["ctx a", "ctx b"]), encoder.encode(["reply a", "reply b"]))
    case = RankingCase("ctx a", ("reply a", "reply b"), "a")
    calibration = ReplyCalibration(weight=0.5, slope=1.0, intercept=0.0)

    def scores(leave_out_own: bool) -> np.ndarray:
        (out,) = score_cases_with_index(
            [case], encoder.encode, index, calibration, depth=1, leave_out_own=leave_out_own
        )
        return out

    seen, held_out = scores(False), scores(True)
    assert seen[0] > seen[1]  # its own moment backs the true reply
    assert held_out[0] < seen[0] and held_out[1] > seen[1]  # only b's moment is evidence
