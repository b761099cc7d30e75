"""The model-bundle registry: numbered versions and an atomic `current` pointer."""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from retrieval.errors import BundleError
from retrieval.registry import (
    GATE_FILE,
    HISTORY,
    Action,
    Registry,
    State,
    is_version,
    resolve_model,
    share_identical,
)


def staged(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.mkdir()
    (path / "manifest.json").write_text("{}")
    return path


def test_publish_numbers_versions_and_moves_the_pointer(tmp_path: Path) -> None:
    """Each publish is the next version and becomes current unless asked not to."""
    reg = Registry(tmp_path / "models")
    assert reg.current_version() is None and reg.versions() == []
    assert reg.publish(staged(tmp_path, "a")) == "v0001"
    assert reg.publish(staged(tmp_path, "b")) == "v0002"
    assert reg.current_version() == "v0002"
    assert reg.publish(staged(tmp_path, "c"), make_current=False) == "v0003"
    assert reg.current_version() == "v0002"
    assert reg.versions() == ["v0001", "v0002", "v0003"]
    assert (reg.current_path() or Path()).joinpath("manifest.json").is_file()


def test_set_current_rolls_back_and_refuses_unknown_versions(tmp_path: Path) -> None:
    """The pointer can go back to an older version; an unknown one is refused."""
    reg = Registry(tmp_path / "models")
    reg.publish(staged(tmp_path, "a"))
    reg.publish(staged(tmp_path, "b"))
    reg.set_current("v0001")
    assert reg.current_version() == "v0001"
    with pytest.raises(BundleError, match="known: v0001, v0002"):
        reg.set_current("v0009")
    assert reg.current_version() == "v0001"


def test_resolve_model_takes_every_form_of_the_served_bundle(tmp_path: Path) -> None:
    """`--model`: a bundle folder; a registry folder or its pointer file (its current);
    `current` or a version name, looked up in the home's models/ when no such path exists."""
    models = tmp_path / "home" / "models"
    reg = Registry(models)
    reg.publish(staged(tmp_path, "a"))
    reg.publish(staged(tmp_path, "b"))
    reg.set_current("v0001")
    v1, v2 = models / "v0001", models / "v0002"
    elsewhere = tmp_path / "elsewhere"  # another home: paths win over the names
    assert resolve_model(v2, elsewhere) == v2
    assert resolve_model(str(v2), elsewhere) == v2
    assert resolve_model(models, elsewhere) == v1
    assert resolve_model(models / "current", elsewhere) == v1
    assert resolve_model("current", models) == v1
    assert resolve_model("v0002", models) == v2
    bare = staged(tmp_path, "bare")
    assert resolve_model(bare, models) == bare


def test_resolve_model_says_what_it_looked_for_and_where(tmp_path: Path) -> None:
    models = tmp_path / "models"
    with pytest.raises(BundleError, match=r"no current model in .*models \(no `current` pointer"):
        resolve_model("current", models)
    reg = Registry(models)
    reg.publish(staged(tmp_path, "a"))
    with pytest.raises(BundleError, match=r"no model version 'v0007' in .*models \(known: v0001\)"):
        resolve_model("v0007", models)
    (models / "current").write_text("v0005\n")  # a pointer to a version that is gone
    with pytest.raises(BundleError, match=r"current names v0005: no model version 'v0005'"):
        resolve_model("current", models)
    with pytest.raises(BundleError, match=r"current names v0005"):
        resolve_model(models, tmp_path / "elsewhere")
    (models / "v0002").mkdir()  # a half-written version
    with pytest.raises(BundleError, match=r"model version v0002 has no manifest\.json"):
        resolve_model("v0002", models)
    with pytest.raises(BundleError, match=r"latest: no such model folder, and not `current`"):
        resolve_model("latest", models)
    (tmp_path / "notes").mkdir()
    with pytest.raises(BundleError, match=r"notes: not a model folder \(no manifest\.json\)"):
        resolve_model(tmp_path / "notes", models)
    assert is_version("v0001") and is_version("v12345")
    assert not is_version("v1") and not is_version("current")


def bundle(tmp_path: Path, name: str, files: dict[str, str] | None = None) -> Path:
    """A staged bundle: a manifest and ``files`` (relative path -> text)."""
    path = staged(tmp_path, name)
    for rel, text in (files or {}).items():
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_text(text)
    return path


def registry_of(tmp_path: Path, count: int) -> Registry:
    """A registry with ``count`` trained versions, the last current."""
    reg = Registry(tmp_path / "models")
    for n in range(count):
        reg.publish(staged(tmp_path, f"s{n}"))
    return reg


def history_lines(reg: Registry) -> list[dict[str, object]]:
    text = (reg.root / HISTORY).read_text()
    return [json.loads(line) for line in text.splitlines()]


def test_every_move_of_the_pointer_is_a_history_line(tmp_path: Path) -> None:
    """train, promote, rollback and forced moves append one JSON line each, with the
    version before; a publish left out of current and a promote of current add none."""
    reg = registry_of(tmp_path, 2)
    reg.publish(staged(tmp_path, "candidate"), make_current=False)
    reg.promote("v0003", action="forced")
    assert reg.promote("v0003") is None
    change = reg.rollback()
    assert (change.current, change.previous, change.action) == ("v0002", "v0003", Action.ROLLBACK)
    reg.set_current("v0001")
    lines = history_lines(reg)
    assert [(x["current"], x["previous"], x["action"]) for x in lines] == [
        ("v0001", None, "train"),
        ("v0002", "v0001", "train"),
        ("v0003", "v0002", "forced"),
        ("v0002", "v0003", "rollback"),
        ("v0001", "v0002", "promote"),
    ]
    at = datetime.fromisoformat(str(lines[0]["at"]))
    assert at.utcoffset() == timedelta(0)
    assert [c.current for c in reg.history()] == ["v0001", "v0002", "v0003", "v0002", "v0001"]


def test_promote_refuses_unknown_and_incomplete_versions(tmp_path: Path) -> None:
    """Only a version with a manifest can become current; a refusal moves nothing."""
    reg = registry_of(tmp_path, 1)
    (reg.root / "v0002").mkdir()  # half-written
    with pytest.raises(BundleError, match=r"model version v0002 has no manifest\.json"):
        reg.promote("v0002")
    with pytest.raises(BundleError, match=r"no model version 'v0009' .*known: v0001, v0002"):
        reg.promote("v0009")
    assert reg.current_version() == "v0001"
    assert len(history_lines(reg)) == 1


def test_rollback_goes_to_the_previous_current_and_a_second_one_undoes_it(
    tmp_path: Path,
) -> None:
    """Like `kubectl rollout undo`: rollback toggles between the last two currents, even
    when the previous one is not the version just below."""
    reg = registry_of(tmp_path, 3)
    reg.promote("v0001")
    assert reg.previous_version() == "v0003"
    assert reg.rollback().current == "v0003"
    assert reg.previous_version() == "v0001"
    assert reg.rollback().current == "v0001"
    assert reg.current_version() == "v0001"


def test_without_history_previous_is_the_newest_complete_version_below(tmp_path: Path) -> None:
    """A registry from before the history (or whose previous is gone): rollback goes to the
    newest complete version below current that the gate did not refuse."""
    reg = Registry(tmp_path / "models")
    reg.root.mkdir()
    for name in ("v0001", "v0002", "v0003", "v0004", "v0005"):
        staged(reg.root, name)
    (reg.root / "v0004" / "manifest.json").unlink()  # incomplete
    (reg.root / "v0003" / GATE_FILE).write_text(json.dumps({"decision": "refused"}))
    (reg.root / "current").write_text("v0005\n")
    assert reg.previous_version() == "v0002"
    (reg.root / "v0002" / "manifest.json").unlink()
    assert reg.previous_version() == "v0001"
    reg.promote("v0005")  # already current: still no history
    assert reg.history() == []
    (reg.root / "current").write_text("v0001\n")
    with pytest.raises(BundleError, match=r"nothing to roll back to from v0001 .*promote one"):
        reg.rollback()


def test_a_pointer_moved_by_hand_is_not_undone_from_stale_history(tmp_path: Path) -> None:
    """The last history line names another current: it no longer says where we came from."""
    reg = registry_of(tmp_path, 3)  # history: v0003, previous v0002
    (reg.root / "current").write_text("v0002\n")
    assert reg.previous_version() == "v0001"
    shutil.rmtree(reg.root / "v0001")
    assert reg.previous_version() is None


def test_rollback_without_a_current_model_says_so(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "models")
    with pytest.raises(BundleError, match=r"nothing to roll back: no current model in .*models"):
        reg.rollback()
    assert reg.previous_version() is None


def test_malformed_history_lines_are_skipped(tmp_path: Path) -> None:
    """A line cut short by a crash, or not a change, is ignored, not fatal."""
    reg = registry_of(tmp_path, 2)
    with (reg.root / HISTORY).open("a") as out:
        out.write('{"at": "2026-01-01T00:00:00+00:00", "current": "v0001"\n')
        out.write('{"at": "yesterday", "current": "v0001", "previous": null, "action": "x"}\n')
    assert [c.current for c in reg.history()] == ["v0001", "v0002"]
    assert reg.previous_version() == "v0001"


def test_prune_keeps_the_newest_and_never_the_current_or_previous(tmp_path: Path) -> None:
    """Beyond the N newest, versions go, except current and previous; staging folders stay."""
    reg = registry_of(tmp_path, 6)
    reg.promote("v0002")  # current v0002, previous v0006
    reg.promote("v0003")  # current v0003, previous v0002
    staging = reg.root / ".staging-1234"
    staging.mkdir()
    assert reg.prune(1) == ["v0001", "v0004", "v0005"]
    assert reg.versions() == ["v0002", "v0003", "v0006"]
    assert staging.is_dir()
    assert not [p for p in reg.root.iterdir() if p.name.startswith(".pruned")]
    assert reg.prune(1) == []
    assert reg.rollback().current == "v0002"
    with pytest.raises(ValueError, match="keep must be 1 or more, got 0"):
        reg.prune(0)


def test_prune_keeps_n_newest(tmp_path: Path) -> None:
    """Without a current or previous among the old ones, exactly the N newest stay."""
    reg = registry_of(tmp_path, 5)
    assert reg.prune(5) == []
    assert reg.prune(3) == ["v0001", "v0002"]  # previous (v0004) is among the 3 newest
    assert reg.versions() == ["v0003", "v0004", "v0005"]


@pytest.mark.parametrize(
    ("gate", "promoted", "expected"),
    [
        (None, False, State.CANDIDATE),
        ({"decision": "refused"}, False, State.REFUSED),
        ({"decision": "promoted"}, False, State.CANDIDATE),
        (None, True, State.RETIRED),  # was current once, then rolled back twice
    ],
)
def test_state_of_a_version_newer_than_current(
    tmp_path: Path, gate: dict[str, str] | None, promoted: bool, expected: State
) -> None:
    """A newer version is a candidate until it has been current or the gate refused it."""
    reg = registry_of(tmp_path, 2)
    reg.publish(staged(tmp_path, "new"), make_current=False)
    if gate is not None:
        (reg.root / "v0003" / GATE_FILE).write_text(json.dumps(gate))
    if promoted:
        reg.promote("v0003")
        reg.rollback()
        reg.promote("v0001")  # v0003 is no longer even previous
    assert reg.state("v0003") == expected


def test_states_of_a_registry(tmp_path: Path) -> None:
    """current, previous, refused and retired, as `models list` shows them."""
    reg = registry_of(tmp_path, 3)
    reg.publish(staged(tmp_path, "refused"), make_current=False)
    (reg.root / "v0004" / GATE_FILE).write_text('{"decision": "refused", "drops": []}')
    (reg.root / "v0001" / GATE_FILE).write_text("not json")  # unreadable: ignored
    assert reg.states() == {
        "v0001": State.RETIRED,
        "v0002": State.PREVIOUS,
        "v0003": State.CURRENT,
        "v0004": State.REFUSED,
    }
    with pytest.raises(BundleError, match="no model version 'v0009'"):
        reg.state("v0009")


def test_publish_links_files_identical_to_the_current_version(tmp_path: Path) -> None:
    """Same path and same bytes: one file on disk (a hard link); a changed file, a file of
    the same size with other bytes, or one at another path keeps its own copy."""
    reg = Registry(tmp_path / "models")
    old = {
        "encoder/model.onnx": "weights" * 1000,
        "encoder/config.json": "{}",
        "head.npz": "head-1",
        "index/meta.json": "meta",
    }
    reg.publish(bundle(tmp_path, "a", old))
    new = {**old, "head.npz": "head-2", "index/meta.json": "atem", "other.txt": "{}"}
    reg.publish(bundle(tmp_path, "b", new))
    v1, v2 = reg.root / "v0001", reg.root / "v0002"

    def same(rel: str) -> bool:
        return os.stat(v1 / rel).st_ino == os.stat(v2 / rel).st_ino

    assert same("encoder/model.onnx") and same("encoder/config.json")
    assert same("manifest.json")  # both `{}` here; training's differ by created_at
    assert not same("head.npz") and not same("index/meta.json")
    assert os.stat(v2 / "other.txt").st_ino != os.stat(v1 / "encoder/config.json").st_ino
    assert (v2 / "head.npz").read_text() == "head-2"
    assert (v2 / "index/meta.json").read_text() == "atem"
    assert not [p for p in v2.rglob(".*")]  # no temporary link left
    infos = {i.version: i for i in reg.describe()}
    assert infos["v0001"].bytes_on_disk == 7000 + 2 + 6 + 4 + 2
    assert infos["v0002"].bytes_on_disk == 6 + 4 + 2  # its own files only


def test_publish_shares_with_current_or_without_one_the_newest(tmp_path: Path) -> None:
    """The reference is the current version; with no pointer, the newest complete one."""
    reg = Registry(tmp_path / "models")
    reg.publish(bundle(tmp_path, "a", {"f": "one"}))
    reg.publish(bundle(tmp_path, "b", {"f": "two"}))
    reg.promote("v0001")
    reg.publish(bundle(tmp_path, "c", {"f": "one"}), make_current=False)
    assert os.stat(reg.root / "v0003/f").st_ino == os.stat(reg.root / "v0001/f").st_ino
    (reg.root / "current").unlink()
    reg.publish(bundle(tmp_path, "d", {"f": "two"}))
    assert os.stat(reg.root / "v0004/f").st_ino != os.stat(reg.root / "v0002/f").st_ino
    reg.publish(bundle(tmp_path, "e", {"f": "two"}))
    assert os.stat(reg.root / "v0005/f").st_ino == os.stat(reg.root / "v0004/f").st_ino


def test_publish_keeps_copies_where_links_fail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another filesystem (or none with hard links): the copy stays, publish succeeds."""
    reg = Registry(tmp_path / "models")
    reg.publish(bundle(tmp_path, "a", {"f": "same"}))

    def cross_device(src: object, dst: object) -> None:
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", cross_device)
    assert reg.publish(bundle(tmp_path, "b", {"f": "same"})) == "v0002"
    assert os.stat(reg.root / "v0002/f").st_ino != os.stat(reg.root / "v0001/f").st_ino
    assert (reg.root / "v0002/f").read_text() == "same"


def test_share_identical_counts_what_it_linked(tmp_path: Path) -> None:
    ref = bundle(tmp_path, "ref", {"a": "x" * 10, "b": "y"})
    new = bundle(tmp_path, "new", {"a": "x" * 10, "b": "z"})
    assert share_identical(new, ref) == (2, 10 + 2)  # a and manifest.json
    assert share_identical(new, ref) == (0, 0)  # already shared
