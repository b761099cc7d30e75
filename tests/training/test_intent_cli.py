"""The stable command line: `frontdesk intents train` and `frontdesk intents eval --json`."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from channels.cli import main
from retrieval.bundle import Bundle
from retrieval.encoder import Encoder
from retrieval.onnx_encoder import OnnxEncoder
from training.args import TrainingArguments
from training.intents import split_validation
from training.precision import native_cpu_bf16

TRAIN = {
    "track": [
        "where is my parcel", "has my package shipped yet", "tracking number for my delivery",
        "when will my order arrive", "my order hasn't come", "where's my stuff",
        "is my package on its way", "order status please",
    ],
    "refund": [
        "I want my money back", "how do I get a refund", "refund my payment please",
        "you charged me twice, give it back", "when will I get my refund",
        "the refund hasn't arrived", "can I be reimbursed", "return the money to my card",
    ],
    "greet": [
        "hello there", "hi!", "good morning", "hey, anyone around?", "hiya", "good evening",
        "hello", "hey there",
    ],
    "password": [
        "I forgot my password", "reset my password", "can't log in to my account",
        "my account is locked", "password reset link doesn't work", "how do I change my password",
        "login not working", "I can't sign in",
    ],
    "oos": [
        "what's the capital of Peru", "tell me a joke", "who won the football match",
        "what is the weather tomorrow", "write me a poem", "how tall is mount everest",
    ],
}  # fmt: skip
TEST = [
    ("where's my package?", "track"),
    ("can I have a refund", "refund"),
    ("hi there", "greet"),
    ("I need to reset my password", "password"),
    ("what's the capital of France", "oos"),
]


def _csv(
    path: Path, rows: list[tuple[str, str]], header: tuple[str, str] = ("text", "intent")
) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("intents")
    train = _csv(
        folder / "train.csv",
        [(t, y) for y, texts in TRAIN.items() for t in texts],
        ("text", "category"),
    )
    out = folder / "model"
    assert (
        main(["intents", "train", "--train", str(train), "--out", str(out), "--epochs", "3"]) == 0
    )
    return out


def test_train_writes_a_servable_bundle_with_a_report(model: Path) -> None:
    for part in (
        "manifest.json", "training_args.json", "intent_head.npz", "encoder/model.onnx",
        "encoder/tokenizer.json", "reports/validation/report.md",
        "reports/validation/reliability.png", "reports/validation/confidence.png",
    ):  # fmt: skip
        assert (model / part).is_file(), part
    manifest = json.loads((model / "manifest.json").read_text())
    assert manifest["oos_label"] == "oos"
    assert sorted(manifest["intents"]) == ["greet", "password", "refund", "track"]
    assert manifest["valid_rows"] > 0 and 1 <= manifest["best_epoch"] <= 3
    # the arithmetic training ran in, resolved from the "auto" setting on this machine
    assert manifest["precision"] == ("bf16" if native_cpu_bf16() else "fp32")
    assert json.loads((model / "training_args.json").read_text())["epochs"] == 3
    report = (model / "reports/validation/report.md").read_text()
    assert "## Worst intents" in report and "## Most confused pairs" in report


def test_eval_prints_the_contract_json(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    test = _csv(tmp_path / "test.csv", TEST)
    capsys.readouterr()
    assert main(["intents", "eval", "--model", str(model), "--test", str(test), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out) == [
        "n", "accuracy", "macro_f1", "in_scope_accuracy", "oos_recall", "oos_precision", "ece",
        "model", "version", "precision",  # what was scored, after the figures
    ]  # fmt: skip
    assert out["model"] == str(model.absolute()) and out["version"] is None  # no registry's
    assert out["precision"] == "fp32"
    assert out["n"] == 5
    assert out["in_scope_accuracy"] >= 0.75
    assert out["oos_recall"] == 1.0
    assert (model / "reports" / "test" / "report.md").is_file()


def test_eval_without_oos_rows_gives_null_oos_fields(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    test = _csv(tmp_path / "in_scope.csv", [r for r in TEST if r[1] != "oos"])
    capsys.readouterr()
    assert main(["intents", "eval", "--model", str(model), "--test", str(test), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["oos_recall"] is None and out["oos_precision"] is None


def test_onnx_serving_agrees_with_torch(model: Path) -> None:
    """The exported graph gives the fine-tuned encoder's embeddings and the same intents."""
    texts = [t for t, _ in TEST] + ["a much longer message about an order that never arrived"]
    torch_emb = Encoder(model / "encoder").encode(texts)
    onnx_emb = OnnxEncoder(model / "encoder").encode(texts)
    np.testing.assert_allclose(onnx_emb, torch_emb, atol=1e-4)
    # a shorter limit (context windows at serving) truncates alike in both, [SEP] kept
    short_torch = Encoder(model / "encoder").encode(texts, max_tokens=6)
    short_onnx = OnnxEncoder(model / "encoder").encode(texts, max_tokens=6)
    np.testing.assert_allclose(short_onnx, short_torch, atol=1e-4)
    assert not np.allclose(short_onnx[-1], onnx_emb[-1], atol=1e-3)  # the long one was cut
    bundle = Bundle.load(model)
    assert isinstance(bundle.encoder, OnnxEncoder)
    # the int8 export (FRONTDESK_ENCODER_INT8) is close to fp32 and predicts the same intents
    int8 = Bundle.load(model, int8=True).encoder
    assert isinstance(int8, OnnxEncoder) and int8.int8
    assert isinstance(bundle.encoder, OnnxEncoder) and not bundle.encoder.int8
    int8_emb = int8.encode(texts)
    assert float((int8_emb * onnx_emb).sum(axis=1).min()) > 0.85  # near, not equal
    head = bundle.head
    agree = head.predict(int8_emb)[0].argmax(1) == head.predict(onnx_emb)[0].argmax(1)
    assert agree.mean() >= 0.9
    assert (head.predict(onnx_emb)[0].argmax(1) == head.predict(torch_emb)[0].argmax(1)).all()


def test_int8_export_quantises_weights_per_output_channel(model: Path) -> None:
    """Per-tensor int8 weights cost Banking77 0.33 point on a CPU without VNNI (BENCHMARKS.md);
    the export keeps one scale and zero point per output channel of every quantised MatMul."""
    import onnx

    graph = onnx.load(str(model / "encoder" / "model.int8.onnx")).graph
    shapes = {init.name: list(init.dims) for init in graph.initializer}
    matmuls = [node for node in graph.node if node.op_type == "MatMulInteger"]
    assert len(matmuls) >= 6 * 6  # q, k, v, output, two feed-forward per layer
    for node in matmuls:
        weight, weight_zero_point = node.input[1], node.input[3]
        assert shapes[weight_zero_point] == [shapes[weight][1]], node.name


def test_bad_input_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = _csv(tmp_path / "bad.csv", [("hi", "greet")], ("sentence", "label"))
    assert main(["intents", "train", "--train", str(bad), "--out", str(tmp_path / "m")]) == 2
    assert "expected a header with the columns `text` and `intent`" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()

    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("keep me")
    good = _csv(tmp_path / "good.csv", [("hi", "greet"), ("refund", "refund")])
    assert main(["intents", "train", "--train", str(good), "--out", str(busy)]) == 2
    assert "not empty and holds no model" in capsys.readouterr().err
    assert (busy / "notes.txt").read_text() == "keep me"

    # another program's manifest.json does not make a folder a model
    webapp = tmp_path / "webapp"
    webapp.mkdir()
    (webapp / "manifest.json").write_text('{"name": "My app", "start_url": "/"}')
    (webapp / "index.html").write_text("<html></html>")
    assert main(["intents", "train", "--train", str(good), "--out", str(webapp)]) == 2
    assert "webapp: folder is not empty and holds no model" in capsys.readouterr().err
    assert sorted(p.name for p in webapp.iterdir()) == ["index.html", "manifest.json"]

    # refused before training: a path under a file, a symbolic link
    (tmp_path / "afile.txt").write_text("x")
    assert (
        main(["intents", "train", "--train", str(good), "--out", str(tmp_path / "afile.txt/m")])
        == 2
    )
    assert "afile.txt is a file, not a folder" in capsys.readouterr().err
    (tmp_path / "link").symlink_to(busy)
    assert main(["intents", "train", "--train", str(good), "--out", str(tmp_path / "link")]) == 2
    assert "link: is a symbolic link; give the folder it points to" in capsys.readouterr().err
    assert (busy / "notes.txt").read_text() == "keep me"

    # the model is checked before the test rows are read
    assert main(["intents", "eval", "--model", str(tmp_path / "nope"), "--test", str(bad)]) == 2
    assert "nope: no such model folder" in capsys.readouterr().err
    assert main(["intents", "eval", "--model", str(busy), "--test", str(bad)]) == 2
    assert "busy: not a model folder (no manifest.json)" in capsys.readouterr().err

    excel = tmp_path / "excel.csv"  # a Latin-1 export, as Excel writes "CSV" by default
    excel.write_bytes("text,intent\ncafé open?,hours\nhi,greet\n".encode("latin-1"))
    assert main(["intents", "train", "--train", str(excel), "--out", str(tmp_path / "m")]) == 2
    assert "excel.csv: not UTF-8 text" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()

    with pytest.raises(SystemExit) as refused:
        main(["train", "--home", str(tmp_path / "home"), "--epochs", "-3"])
    assert refused.value.code == 2
    assert "--epochs: expected 0 or more, got -3" in capsys.readouterr().err
    with pytest.raises(SystemExit) as refused:
        main(
            ["intents", "train", "--train", str(excel), "--out", str(tmp_path / "m"), "--soup", "0"]
        )
    assert refused.value.code == 2
    assert "--soup: expected 1 or more, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit) as refused:
        main(["train", "--home", str(tmp_path / "home"), "--layers", "0"])
    assert refused.value.code == 2
    assert "--layers: expected 1 or more, got 0" in capsys.readouterr().err
    assert not (tmp_path / "home").exists()


def test_train_reports_skipped_rows_once_before_training_and_counts_its_own_oos_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """Malformed rows are listed on standard error once (as they are read, before
    training, not again after it); the summary's out-of-scope count is of the
    rows trained on, after the validation carve-out; the model folder is readable by
    others as the umask allows (not a private temporary folder's 0700); the validation
    report is titled with the model's name and, the head being fitted again with the
    validation rows, says that it is of the head before."""
    import os

    rows = [(t, y) for y, texts in TRAIN.items() for t in texts]
    train = _csv(tmp_path / "train.csv", [*rows, ("", "greet"), ("only one", "")])
    out = tmp_path / "m"
    assert (
        main(["intents", "train", "--train", str(train), "--out", str(out), "--epochs", "0"]) == 0
    )
    captured = capsys.readouterr()
    assert captured.err.count("train.csv:") == 2  # each skipped row once ...
    assert "skipped" not in caplog.text  # ... and not logged as well
    manifest = json.loads((out / "manifest.json").read_text())
    labels = [y for _, y in rows]
    args = TrainingArguments()
    train_idx, _ = split_validation(labels, args.valid_fraction, args.seed)
    trained_oos = sum(1 for i in train_idx if labels[i] == "oos")
    assert 0 < trained_oos < len(TRAIN["oos"])  # some were carved out for validation
    assert f"from {manifest['train_rows']} rows ({trained_oos} out-of-scope)" in captured.out
    umask = os.umask(0)
    os.umask(umask)
    assert (out.stat().st_mode & 0o777) == 0o777 & ~umask
    report = (out / "reports/validation/report.md").read_text()
    assert manifest["head_refitted"] is True  # the head alone, then fitted to all rows
    assert report.startswith("# Intent model m (before the refit) on validation")


def test_out_may_be_the_current_folder(
    model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--out .` inside a model folder replaces that model (the new one is staged beside the
    folder, not inside it, where replacing the folder would delete it)."""
    import shutil

    here = tmp_path / "m"
    shutil.copytree(model, here)
    before = json.loads((here / "manifest.json").read_text())["created_at"]
    train = _csv(tmp_path / "train.csv", [(t, y) for y, texts in TRAIN.items() for t in texts])
    monkeypatch.chdir(here)
    assert main(["intents", "train", "--train", str(train), "--out", ".", "--epochs", "0"]) == 0
    monkeypatch.chdir(tmp_path)
    assert json.loads((here / "manifest.json").read_text())["created_at"] != before
    assert Bundle.load(here).head.intents == ("greet", "password", "refund", "track")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_eval_keeps_the_validation_report_and_warns_of_unseen_intents(
    model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    before = (model / "reports/validation/report.md").read_text()
    test = _csv(tmp_path / "validation.csv", [*TEST, ("change my address", "change_address")])
    assert main(["intents", "eval", "--model", str(model), "--test", str(test), "--json"]) == 0
    assert (model / "reports/validation/report.md").read_text() == before
    assert (model / "reports/validation-test/report.md").is_file()
    assert "1 test rows carry intents the model was not trained on: change_address (1)" in (
        caplog.text
    )


def test_eval_takes_a_registry_current_pointer(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--model HOME/models/current` (the pointer file), `HOME/models`, or `current` and
    `v0003` with that home evaluate the current version, as the server would load it."""
    import shutil

    models = tmp_path / "models"
    shutil.copytree(model, models / "v0003")
    (models / "current").write_text("v0003\n")
    test = _csv(tmp_path / "test.csv", TEST)
    direct = main(["intents", "eval", "--model", str(model), "--test", str(test), "--json"])
    expected = json.loads(capsys.readouterr().out)
    expected.update(model=str((models / "v0003").absolute()), version="v0003")
    home = ["--home", str(tmp_path)]
    for named in (str(models / "current"), str(models), "current", "v0003"):
        command = ["intents", "eval", "--model", named, "--test", str(test), "--json", *home]
        assert main(command) == 0
        assert json.loads(capsys.readouterr().out) == expected
    assert direct == 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_asking_for_cuda_without_it_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = _csv(tmp_path / "good.csv", [("hi", "greet"), ("refund", "refund")])
    args = ["intents", "train", "--train", str(good), "--out", str(tmp_path / "m")]
    assert main([*args, "--device", "cuda"]) == 2
    assert "no CUDA device is available" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_train_with_a_soup_writes_one_averaged_bundle(tmp_path: Path) -> None:
    train = _csv(
        tmp_path / "train.csv",
        [(t, y) for y, texts in TRAIN.items() for t in texts],
        ("text", "category"),
    )
    out = tmp_path / "model"
    command = ["intents", "train", "--train", str(train), "--out", str(out), "--epochs", "1"]
    assert main([*command, "--soup", "2"]) == 0
    assert json.loads((out / "training_args.json").read_text())["soup"] == 2
    manifest = json.loads((out / "manifest.json").read_text())
    assert [epoch["member"] for epoch in manifest["history"]] == [0, 1]
    assert (out / "encoder/model.onnx").is_file()


def test_train_with_fewer_layers_exports_and_serves_that_depth(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--layers 2`: the bundle's encoder has two layers (config, ONNX export), the
    ONNX export agrees with torch, the setting is saved, and eval works; asking for more
    layers than the base encoder has is a clear error that writes nothing."""
    train = _csv(tmp_path / "train.csv", [(t, y) for y, texts in TRAIN.items() for t in texts])
    out = tmp_path / "model"
    command = ["intents", "train", "--train", str(train), "--epochs", "1", "--json"]
    assert main([*command, "--out", str(out), "--layers", "2"]) == 0
    assert json.loads((out / "training_args.json").read_text())["layers"] == 2
    config = json.loads((out / "encoder/config.json").read_text())
    assert config["num_hidden_layers"] == 2
    texts = [t for t, _ in TEST]
    torch_vectors = Encoder(out / "encoder").encode(texts)
    onnx_vectors = OnnxEncoder(out / "encoder").encode(texts)
    np.testing.assert_allclose(onnx_vectors, torch_vectors, atol=1e-4)
    capsys.readouterr()
    test = _csv(tmp_path / "test.csv", TEST)
    assert main(["intents", "eval", "--model", str(out), "--test", str(test), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == len(TEST)

    assert main([*command, "--out", str(tmp_path / "deep"), "--layers", "7"]) == 2
    assert "layers=7: the encoder has 6 layers; cannot keep 7" in capsys.readouterr().err
    assert not (tmp_path / "deep").exists()
