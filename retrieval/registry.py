"""Model-bundle registry: versioned folders under ``FRONTDESK_HOME/models`` and a
``current`` pointer file that servers watch. Publishing is atomic (``os.replace``)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from retrieval.errors import BundleError

POINTER = "current"
_VERSION = re.compile(r"^v(\d{4,})$")


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
