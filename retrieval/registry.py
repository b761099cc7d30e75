"""Model-bundle registry: versioned folders under ``FRONTDESK_HOME/models`` and a
``current`` pointer file that servers watch. Publishing is atomic (``os.replace``)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from retrieval.bundle import MANIFEST
from retrieval.errors import BundleError

POINTER = "current"
_VERSION = re.compile(r"^v(\d{4,})$")
MODEL_FORMS = (
    "a bundle folder, `current` or a version name (v0003) in the home's models/ "
    "(FRONTDESK_HOME or --home), or a models/ folder (its current)"
)
"""What a ``--model`` argument may be (:func:`resolve_model`), for errors and help."""


def is_version(name: str) -> bool:
    """Whether ``name`` is a registry version's name (``v0001``, ...)."""
    return _VERSION.match(name) is not None


class Registry:
    def __init__(self, root: Path) -> None:
        self.root = root

    def versions(self) -> list[str]:
        if not self.root.is_dir():
            return []
        found = [p.name for p in self.root.iterdir() if p.is_dir() and _VERSION.match(p.name)]
        return sorted(found, key=lambda name: int(name[1:]))

    def current_version(self) -> str | None:
        try:
            version = (self.root / POINTER).read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        return version or None

    def current_path(self) -> Path | None:
        version = self.current_version()
        return None if version is None else self.root / version

    def path_of(self, version: str) -> Path:
        path = self.root / version
        if not _VERSION.match(version) or not path.is_dir():
            known = ", ".join(self.versions()) or "none"
            raise BundleError(f"no model version {version!r} in {self.root} (known: {known})")
        return path

    def bundle(self, version: str) -> Path:
        """The folder of ``version``, checked to hold a bundle."""
        path = self.path_of(version)
        if not (path / MANIFEST).is_file():
            raise BundleError(f"{path}: model version {version} has no {MANIFEST} (incomplete)")
        return path

    def current_bundle(self) -> Path:
        """The current version's folder, checked like :meth:`bundle`."""
        version = self.current_version()
        if version is None:
            known = ", ".join(self.versions()) or "none"
            raise BundleError(
                f"no current model in {self.root} (no `{POINTER}` pointer; versions: {known}); "
                "run `frontdesk train`, or give a bundle folder"
            )
        try:
            return self.bundle(version)
        except BundleError as exc:
            raise BundleError(f"{self.root / POINTER} names {version}: {exc}") from None

    def publish(self, staging: Path, *, make_current: bool = True) -> str:
        """Move a finished bundle folder into the registry as the next version."""
        self.root.mkdir(parents=True, exist_ok=True)
        existing = self.versions()
        number = int(existing[-1][1:]) + 1 if existing else 1
        version = f"v{number:04d}"
        shutil.move(str(staging), str(self.root / version))
        if make_current:
            self.set_current(version)
        return version

    def set_current(self, version: str) -> None:
        self.path_of(version)
        tmp = self.root / f".{POINTER}.tmp"
        tmp.write_text(version + "\n", encoding="utf-8")
        os.replace(tmp, self.root / POINTER)


def resolve_model(name: str | Path, models_dir: Path) -> Path:
    """The bundle folder a ``--model`` argument names, the one the server would load:

    - a path that exists: a bundle folder (it has a manifest), a registry folder (its
      ``current`` version) or a registry's ``current`` pointer file;
    - otherwise ``current`` or a version name (``v0003``): that bundle of the registry in
      ``models_dir`` (the server's ``FRONTDESK_HOME/models``).

    Anything else raises :class:`BundleError` naming what was looked for and where."""
    path = Path(name)
    if path.exists():
        if path.is_file() and path.name == POINTER:
            return Registry(path.parent).current_bundle()
        if (path / MANIFEST).is_file():
            return path
        if path.is_dir() and ((path / POINTER).is_file() or Registry(path).versions()):
            return Registry(path).current_bundle()
        raise BundleError(
            f"{path}: not a model folder (no {MANIFEST}); --model takes {MODEL_FORMS}"
        )
    text = str(name)
    if text == POINTER:
        return Registry(models_dir).current_bundle()
    if is_version(text):
        return Registry(models_dir).bundle(text)
    raise BundleError(
        f"{path}: no such model folder, and not `{POINTER}` or a version name of "
        f"{models_dir}; --model takes {MODEL_FORMS}"
    )
