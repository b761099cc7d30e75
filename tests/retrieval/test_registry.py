"""The model-bundle registry: numbered versions and an atomic `current` pointer."""

from __future__ import annotations

from pathlib import Path

import pytest

from retrieval.errors import BundleError
from retrieval.registry import Registry, is_version, resolve_model


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
