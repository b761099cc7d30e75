"""`frontdesk intents eval` and `frontdesk dialogues eval` score the bundle the server
answers with: `--model` names it as a folder, `current`, a version or the registry folder,
and it is loaded as `frontdesk serve` loads it (FRONTDESK_HOME, FRONTDESK_ENCODER_INT8)."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from bot.definition import load_bot
from channels.cli import main
from channels.runtime import load_current_bundle
from retrieval.bundle import Bundle
from retrieval.chatlog import read_logs, write_chatlog_jsonl
from retrieval.registry import Registry
from tests.conftest import SHOP
from training.dialogue_model import evaluate_dialogues
from training.evaluation import Predictions, metrics

METRICS = ["n", "accuracy", "macro_f1", "in_scope_accuracy", "oos_recall", "oos_precision", "ece"]
RANKING = ["n", "recall@1", "recall@5", "recall@10", "mrr"]
SCORED = ["model", "version", "precision"]
OUT_OF_SCOPE = ["what's the capital of Peru", "tell me a joke about cats", "who won the match"]


@pytest.fixture(scope="module")
def home(shop_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private home whose registry holds the trained demo bundle twice, v0001 (current)
    and v0002 (files linked, not copied: the reports eval writes are new files)."""
    home = tmp_path_factory.mktemp("served-home")
    source = Registry(shop_home / "models").current_path()
    assert source is not None
    for version in ("v0001", "v0002"):
        shutil.copytree(source, home / "models" / version, copy_function=os.link)
    Registry(home / "models").set_current("v0001")
    return home


@pytest.fixture(autouse=True)
def server_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No serving setting of the machine running the tests leaks in."""
    for name in ("FRONTDESK_HOME", "FRONTDESK_ENCODER_INT8", "FRONTDESK_ENCODER_THREADS"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def shop_rows(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """text,intent rows from the demo bot's intents (two examples each) and a few `oos`."""
    path = tmp_path_factory.mktemp("rows") / "shop_intents.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "intent"])
        for intent in load_bot(SHOP).intents:
            writer.writerows((text, intent.name) for text in intent.examples[:2])
        writer.writerows((text, "oos") for text in OUT_OF_SCOPE)
    return path


@pytest.fixture(scope="module")
def shop_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo bot's own past dialogues, the first 20 conversations (a quick eval)."""
    path = tmp_path_factory.mktemp("logs") / "dialogues.jsonl"
    write_chatlog_jsonl(read_logs(SHOP / "dialogues.jsonl").logs[:20], path)
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, object]:
    capsys.readouterr()
    assert main(list(argv)) == 0
    out: dict[str, object] = json.loads(capsys.readouterr().out)
    return out


def test_intents_eval_scores_the_same_bundle_however_it_is_named(
    home: Path,
    shop_rows: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`current` and `v0001` in the home (--home or FRONTDESK_HOME), the version's folder,
    the registry folder and its pointer file: one bundle, one set of numbers, the same as
    the server's own analysis of the rows (its loader, its encoder and head)."""
    models = home / "models"
    test = ["--test", str(shop_rows), "--json"]
    first = run(capsys, "intents", "eval", "--model", "current", "--home", str(home), *test)
    assert list(first) == METRICS + SCORED
    assert first["model"] == str((models / "v0001").absolute())
    assert first["version"] == "v0001" and first["precision"] == "fp32"
    for named in (str(models / "v0001"), str(models), str(models / "current")):
        assert run(capsys, "intents", "eval", "--model", named, *test) == first
    monkeypatch.setenv("FRONTDESK_HOME", str(home))
    assert run(capsys, "intents", "eval", "--model", "v0001", *test) == first
    other = run(capsys, "intents", "eval", "--model", "v0002", *test)
    assert other["version"] == "v0002"
    assert {k: other[k] for k in METRICS} == {k: first[k] for k in METRICS}  # a copy of it

    served = load_current_bundle(models, load_bot(SHOP))
    with shop_rows.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    analyses = served.analyze([row["text"] for row in rows])
    as_served = metrics(
        Predictions(
            truth=tuple(row["intent"] for row in rows),
            intent=tuple(a.intents[0][0] for a in analyses),
            confidence=np.asarray([a.intents[0][1] for a in analyses], dtype=np.float32),
            rejected=np.asarray([a.out_of_scope >= 0.5 for a in analyses]),
            oos_label="oos",
        )
    )
    assert first["n"] == len(rows) and first["oos_recall"] is not None
    assert {k: first[k] for k in METRICS} == pytest.approx(as_served, abs=1e-6)


def test_dialogues_eval_scores_the_same_bundle_however_it_is_named(
    home: Path,
    shop_logs: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bundle made by `frontdesk train --bot examples/shop`, on the shop's dialogues."""
    models = home / "models"
    logs = ["--logs", str(shop_logs), "--json"]
    first = run(capsys, "dialogues", "eval", "--model", "current", "--home", str(home), *logs)
    assert list(first) == RANKING + SCORED
    assert first["version"] == "v0001" and first["precision"] == "fp32"
    assert isinstance(first["n"], int) and first["n"] > 20
    assert isinstance(first["recall@5"], float) and first["recall@5"] > 0.5
    monkeypatch.setenv("FRONTDESK_HOME", str(home))
    assert run(capsys, "dialogues", "eval", "--model", "v0001", *logs) == first
    assert run(capsys, "dialogues", "eval", "--model", str(models / "v0001"), *logs) == first


@pytest.mark.parametrize("command", ["intents", "dialogues"])
def test_a_model_that_is_not_there_is_a_one_line_error(
    command: str,
    home: Path,
    shop_rows: Path,
    shop_logs: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = ["--test", str(shop_rows)] if command == "intents" else ["--logs", str(shop_logs)]
    capsys.readouterr()
    code = main([command, "eval", "--model", "v0009", "--home", str(home), *data, "--json"])
    assert code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        f"frontdesk: error: no model version 'v0009' in {home / 'models'} (known: v0001, v0002)"
    ]
    empty = tmp_path / "empty-home"
    assert main([command, "eval", "--model", "current", "--home", str(empty), *data]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"frontdesk: error: no current model in {empty / 'models'} ")
    assert main([command, "eval", "--model", str(tmp_path / "nope"), *data]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"frontdesk: error: {tmp_path / 'nope'}: no such model folder")


def test_the_precision_is_the_servers(
    home: Path,
    shop_rows: Path,
    shop_logs: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """FRONTDESK_ENCODER_INT8 (what `serve` reads) picks the encoder eval scores; --int8 and
    --fp32 override it; the output says which ran."""
    intents = ["intents", "eval", "--model", "current", "--test", str(shop_rows), "--json"]
    dialogues = ["dialogues", "eval", "--model", "current", "--logs", str(shop_logs), "--json"]
    monkeypatch.setenv("FRONTDESK_HOME", str(home))
    fp32 = run(capsys, *intents)
    monkeypatch.setenv("FRONTDESK_ENCODER_INT8", "1")
    int8 = run(capsys, *intents)
    assert (fp32["precision"], int8["precision"]) == ("fp32", "int8")
    assert int8["ece"] != fp32["ece"]  # another encoder ran
    assert run(capsys, *intents, "--fp32") == fp32
    ranked = run(capsys, *dialogues)
    assert ranked["precision"] == "int8"
    path = home / "models" / "v0001"
    expected, _ = evaluate_dialogues(Bundle.load(path, int8=True), [shop_logs])
    assert {k: ranked[k] for k in RANKING} == expected
    assert run(capsys, *dialogues, "--fp32")["precision"] == "fp32"
    monkeypatch.setenv("FRONTDESK_ENCODER_INT8", "0")
    assert run(capsys, *intents) == fp32
    assert run(capsys, *intents, "--int8") == int8

    capsys.readouterr()  # without --json: the same, as lines
    assert main(intents[:-1]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "precision: fp32" in [line.strip() for line in lines]
    assert f"model: {path.absolute()}" in [line.strip() for line in lines]
