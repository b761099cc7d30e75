"""The model-bundle registry: numbered versions and an atomic `current` pointer."""

from __future__ import annotations

from pathlib import Path

import pytest

from retrieval.errors import BundleError
from retrieval.registry import Registry


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
