"""`frontdesk models`: list, promote, rollback and prune over fake bundles (no training)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from channels.cli import main
from retrieval.registry import GATE_FILE, Registry


@pytest.fixture(autouse=True)
def no_home_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FRONTDESK_HOME", raising=False)


def publish(
    home: Path,
    tmp_path: Path,
    name: str,
    *,
    current: bool = True,
    encoder: str = "shared weights " * 100,
    **manifest: Any,
) -> str:
    """A fake bundle (a manifest and an encoder file) published into ``home``."""
    staging = tmp_path / name
    (staging / "encoder").mkdir(parents=True)
    (staging / "encoder" / "model.onnx").write_text(encoder)
    (staging / "manifest.json").write_text(json.dumps({"bot": "shop", **manifest}))
    return Registry(home / "models").publish(staging, make_current=current)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """v0001 and v0002 trained (v0002 current), v0003 a candidate the gate refused, v0004
    a candidate not judged yet, with its own encoder."""
    home = tmp_path / "home"
    publish(home, tmp_path, "a", created_at="2026-03-01T02:00:00+00:00", bot_digest="a" * 64)
    publish(
        home,
        tmp_path,
        "b",
        created_at="2026-03-02T03:04:59.5+01:00",
        bot_digest="0123456789abcdef" * 4,
        metrics={"intent_accuracy": 0.93121, "recall_at_1": 0.5, "note": "not a number"},
    )
    publish(home, tmp_path, "c", current=False, created_at="2026-03-03T02:00:00+00:00")
    (home / "models" / "v0003" / GATE_FILE).write_text(
        json.dumps({"decision": "refused", "against": "v0002", "metrics": {}, "drops": []})
    )
    publish(home, tmp_path, "d", current=False, encoder="other weights " * 10)
    return home


def run(capsys: pytest.CaptureFixture[str], home: Path, *argv: str) -> tuple[int, str, str]:
    code = main(["models", *argv, "--home", str(home)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_list_json_shows_each_version_its_state_and_its_own_bytes(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--json: every version with its manifest's fields, gate decision and state; the
    shared encoder counts in v0001 only."""
    code, out, _ = run(capsys, home, "list", "--json")
    assert code == 0
    listing = json.loads(out)
    assert listing["current"] == "v0002" and listing["previous"] == "v0001"
    models = {m["version"]: m for m in listing["models"]}
    assert list(models) == ["v0001", "v0002", "v0003", "v0004"]
    assert {v: m["state"] for v, m in models.items()} == {
        "v0001": "previous",
        "v0002": "current",
        "v0003": "refused",
        "v0004": "candidate",
    }
    v2 = models["v0002"]
    assert v2["bot"] == "shop" and v2["bot_digest"] == "0123456789abcdef" * 4
    assert v2["created_at"] == "2026-03-02T03:04:59.5+01:00"
    assert v2["metrics"] == {"intent_accuracy": 0.93121, "recall_at_1": 0.5}
    assert v2["gate"] is None and models["v0003"]["gate"] == "refused"
    assert models["v0004"]["metrics"] == {} and models["v0004"]["bot_digest"] is None
    manifest_bytes = {v: len((home / "models" / v / "manifest.json").read_bytes()) for v in models}
    encoder = len("shared weights " * 100)
    assert models["v0001"]["bytes"] == encoder + manifest_bytes["v0001"]
    assert models["v0002"]["bytes"] == manifest_bytes["v0002"]
    gate = len((home / "models" / "v0003" / GATE_FILE).read_bytes())
    assert models["v0003"]["bytes"] == manifest_bytes["v0003"] + gate
    assert models["v0004"]["bytes"] == manifest_bytes["v0004"] + len("other weights " * 10)


def test_list_prints_one_row_per_version(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The table: created in UTC to the minute, a 12-character digest, the state, gate and
    metrics; a total line."""
    code, out, _ = run(capsys, home, "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == [
        "VERSION",
        "CREATED",
        "STATE",
        "BOT",
        "DIGEST",
        "SIZE",
        "GATE",
        "METRICS",
    ]
    rows = {line.split()[0]: line.split() for line in lines[1:5]}
    assert rows["v0002"][:6] == ["v0002", "2026-03-02", "02:04", "current", "shop", "0123456789ab"]
    assert rows["v0002"][-2:] == ["intent_accuracy=0.9312", "recall_at_1=0.5"]
    assert rows["v0001"][3] == "previous" and rows["v0001"][5] == "a" * 12
    assert rows["v0003"][3] == "refused" and "refused" in rows["v0003"][6:]
    assert rows["v0004"][1:5] == ["-", "candidate", "shop", "-"]
    assert lines[5].startswith("4 versions, ") and "on disk" in lines[5]
    assert len(lines) == 6


def test_list_of_an_empty_home(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, tmp_path, "list", "--json")
    assert code == 0
    assert json.loads(out) == {"models": [], "current": None, "previous": None}
    code, out, _ = run(capsys, tmp_path, "list")
    assert code == 0 and "no model versions in" in out


def test_promote_then_rollback_twice_toggles(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """promote moves the pointer and says so; rollback goes back; a second one undoes it."""
    models = home / "models"
    code, out, _ = run(capsys, home, "promote", "v0004")
    assert code == 0
    assert out.startswith("current: v0002 -> v0004; ") and "hot swap" in out
    assert (models / "current").read_text().strip() == "v0004"
    code, out, _ = run(capsys, home, "rollback")
    assert code == 0 and out.startswith("rolled back: current: v0004 -> v0002; ")
    code, out, _ = run(capsys, home, "rollback")
    assert code == 0 and out.startswith("rolled back: current: v0002 -> v0004; ")
    actions = [json.loads(x)["action"] for x in (models / "history.jsonl").read_text().splitlines()]
    assert actions == ["train", "train", "promote", "rollback", "rollback"]


def test_promote_a_refused_version_says_the_gate_refused_it(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, home, "promote", "v0003")
    assert code == 0 and "the evaluation gate had refused v0003" in out
    code, out, _ = run(capsys, home, "promote", "v0003")
    assert code == 0 and out.strip() == "current: v0003 already; nothing changed"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["promote", "v0009"], r"no model version 'v0009' in .*known: v0001, v0002, v0003, v0004"),
        (["promote", "latest"], r"no model version 'latest'"),
        (["prune", "--keep", "0"], r"--keep: expected 1 or more versions to keep, got 0"),
    ],
)
def test_errors_exit_2_and_change_nothing(
    home: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    """An unknown version or a keep below 1: `frontdesk: error:` and exit 2; nothing moves."""
    code, out, err = run(capsys, home, *argv)
    assert code == 2 and out == ""
    assert err.startswith("frontdesk: error: ")
    assert re.search(message, err), err
    assert (home / "models" / "current").read_text().strip() == "v0002"
    assert Registry(home / "models").versions() == ["v0001", "v0002", "v0003", "v0004"]


def test_rollback_with_nothing_before_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    code, _, err = run(capsys, home, "rollback")
    assert code == 2 and "nothing to roll back: no current model" in err
    publish(home, tmp_path, "a")
    code, _, err = run(capsys, home, "rollback")
    assert code == 2 and "frontdesk: error: nothing to roll back to from v0001" in err


def test_prune_never_removes_current_or_previous(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--keep 1 keeps the newest, the current and the previous; the shared encoder file
    survives its first version's removal."""
    run(capsys, home, "promote", "v0001")  # current v0001, previous v0002
    code, out, _ = run(capsys, home, "prune", "--keep", "1", "--json")
    assert code == 0
    assert json.loads(out) == {"removed": ["v0003"], "kept": ["v0001", "v0002", "v0004"]}
    run(capsys, home, "promote", "v0004")  # current v0004, previous v0001
    code, out, _ = run(capsys, home, "prune", "--keep", "1")
    assert code == 0 and out.strip() == "removed v0002; kept v0001, v0004"
    code, out, _ = run(capsys, home, "prune", "--keep", "1")
    assert out.strip() == "nothing to remove; kept v0001, v0004"
    assert (home / "models" / "v0001" / "encoder" / "model.onnx").read_text().startswith("shared")
