"""Where a training command writes its model: checked before any training, written to a
staging folder beside it, and put in place only once complete.

A failed or interrupted training leaves the old model as it was; a folder that is not a
Frontdesk model is never replaced.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from retrieval.bundle import MANIFEST
from training.intent_data import IntentDataError


def check_out(out: Path) -> None:
    """Refuse, before any work, an ``out`` that could not or should not be replaced: a
    file, a symbolic link, a folder that is not empty and holds no Frontdesk model, or a
    path under a file."""
    if out.is_symlink():
        raise IntentDataError(
            f"{out}: is a symbolic link; give the folder it points to ({os.readlink(out)})"
        )
    out = absolute(out)
    if out.exists() and not out.is_dir():
        raise IntentDataError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not is_model(out):
        raise IntentDataError(
            f"{out}: folder is not empty and holds no model; choose an empty or new folder"
        )
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise IntentDataError(f"{out}: {parent} is a file, not a folder")
            break


def absolute(path: Path) -> Path:
    """``path`` from the root, with ``.`` and ``..`` resolved but links kept."""
    return Path(os.path.abspath(path))


def is_model(folder: Path) -> bool:
    """Whether ``folder`` holds a model a Frontdesk training wrote: a manifest that is a
    JSON object with a bundle ``format`` (another program's ``manifest.json`` is not)."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and isinstance(manifest.get("format"), int)


@contextmanager
def staging_in(root: Path, prefix: str = ".staging") -> Iterator[Path]:
    """A new empty folder under ``root``, made with the process's umask (as the model folder
    itself would be), to write a bundle into; removed on any error. The caller moves it
    into place (a registry's next version)."""
    root.mkdir(parents=True, exist_ok=True)
    staging = root / f"{prefix}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


@contextmanager
def staging_beside(out: Path) -> Iterator[Path]:
    """:func:`staging_in` next to ``out``: on success the staged folder replaces ``out``;
    on any error it is removed and ``out`` is left alone."""
    out = absolute(out)  # `.` has no name and is its own parent
    with staging_in(out.parent, f".{out.name}") as staging:
        yield staging
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
