"""Model-bundle registry: versioned folders under ``FRONTDESK_HOME/models``, a ``current``
pointer file that servers watch, and ``history.jsonl``, one line per move of the pointer.

Publishing and promoting are atomic (``os.replace``). File operations only: no torch.

**A published bundle is never modified in place.** ``publish`` hard-links each file of a new
version that is byte-identical to the same file of the current version (an encoder that was
not fine-tuned, say), so one file may belong to several versions: writing into it would
change them all. A writer may add new files to a published bundle (an evaluation's report);
one that replaces a file writes a new file and ``os.replace``-s it over the old path, which
gives that version its own file and leaves the others alone.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from retrieval.bundle import MANIFEST
from retrieval.errors import BundleError

log = logging.getLogger(__name__)

POINTER = "current"
HISTORY = "history.jsonl"
"""One JSON object a line, appended each time the ``current`` pointer moves (:class:`Change`)."""
GATE_FILE = "gate.json"
"""The evaluation gate's verdict, in the candidate's folder: ``{"decision": "promoted" |
"refused" | "forced" | "first", "against": version | null, "metrics": {...}, "drops": [...]}``."""
REFUSED = "refused"
"""The gate's ``decision`` for a candidate it did not promote."""
_VERSION = re.compile(r"^v(\d{4,})$")
MODEL_FORMS = (
    "a bundle folder, `current` or a version name (v0003) in the home's models/ "
    "(FRONTDESK_HOME or --home), or a models/ folder (its current)"
)
"""What a ``--model`` argument may be (:func:`resolve_model`), for errors and help."""


def is_version(name: str) -> bool:
    """Whether ``name`` is a registry version's name (``v0001``, ...)."""
    return _VERSION.match(name) is not None


def _number(version: str) -> int:
    return int(version[1:])


class Action(StrEnum):
    """Why the ``current`` pointer moved (a history line's ``action``)."""

    TRAIN = "train"
    """``frontdesk train`` published a version and made it current."""
    PROMOTE = "promote"
    """A version was made current by hand (``frontdesk models promote``) or by the gate."""
    ROLLBACK = "rollback"
    """``frontdesk models rollback``: back to the previous current."""
    FORCED = "forced"
    """The gate refused the version and ``--force`` promoted it anyway."""


class State(StrEnum):
    """Where a version stands, for ``frontdesk models list`` (:meth:`Registry.states`)."""

    CURRENT = "current"
    """What the servers serve (the ``current`` pointer)."""
    PREVIOUS = "previous"
    """Where ``rollback`` goes (:meth:`Registry.previous_version`)."""
    CANDIDATE = "candidate"
    """Never current, newer than the current one, and not refused by the gate."""
    REFUSED = "refused"
    """The gate refused it (its ``gate.json``)."""
    RETIRED = "retired"
    """Anything else: an older version that is neither current nor previous."""


@dataclass(frozen=True)
class Change:
    """One move of the ``current`` pointer: a line of ``history.jsonl``."""

    at: datetime
    current: str
    previous: str | None
    action: Action

    def to_json(self) -> dict[str, str | None]:
        return {
            "at": self.at.isoformat(),
            "current": self.current,
            "previous": self.previous,
            "action": self.action.value,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Change:
        """Raises ``KeyError``, ``TypeError`` or ``ValueError`` for a malformed line."""
        previous = data["previous"]
        if not isinstance(data["current"], str) or not isinstance(previous, str | None):
            raise TypeError("current and previous must be version names")
        return cls(
            at=datetime.fromisoformat(data["at"]),
            current=data["current"],
            previous=previous,
            action=Action(data["action"]),
        )


@dataclass(frozen=True)
class VersionInfo:
    """A version as ``frontdesk models list`` shows it: its state, what its manifest and
    its ``gate.json`` say, and its size."""

    version: str
    state: State
    complete: bool
    """Whether the folder has a manifest (a bundle can load from it)."""
    created_at: str | None
    bot: str | None
    bot_digest: str | None
    metrics: Mapping[str, float]
    """The manifest's ``metrics`` (name -> number, written by training); empty if none."""
    gate: str | None
    """The gate's decision (``gate.json``), None where the gate did not judge it."""
    bytes_on_disk: int
    """Its files' bytes, a file shared by several versions counted in the oldest only."""


class Registry:
    def __init__(self, root: Path) -> None:
        self.root = root

    def versions(self) -> list[str]:
        if not self.root.is_dir():
            return []
        found = [p.name for p in self.root.iterdir() if p.is_dir() and _VERSION.match(p.name)]
        return sorted(found, key=_number)

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

    def is_complete(self, version: str) -> bool:
        """Whether ``version`` exists and has a manifest."""
        return is_version(version) and (self.root / version / MANIFEST).is_file()

    def publish(self, staging: Path, *, make_current: bool = True) -> str:
        """Move a finished bundle folder into the registry as the next version; with
        ``make_current``, point ``current`` at it (history: ``train``).

        Before the move, each file of ``staging`` that is byte-identical to the file at the
        same path in the current version (without one, the newest complete version) becomes
        a hard link to it (:func:`share_identical`)."""
        self.root.mkdir(parents=True, exist_ok=True)
        existing = self.versions()
        reference = self._sharing_reference(existing)
        if reference is not None:
            files, size = share_identical(staging, self.root / reference)
            if files:
                log.info("sharing %d files (%d bytes) with %s", files, size, reference)
        number = _number(existing[-1]) + 1 if existing else 1
        version = f"v{number:04d}"
        shutil.move(str(staging), str(self.root / version))
        if make_current:
            self._move_pointer(version, Action.TRAIN)
        return version

    def _sharing_reference(self, existing: list[str]) -> str | None:
        current = self.current_version()
        if current is not None and self.is_complete(current):
            return current
        complete = [v for v in existing if self.is_complete(v)]
        return complete[-1] if complete else None

    def promote(self, version: str, action: Action | str = Action.PROMOTE) -> Change | None:
        """Point ``current`` at ``version``, a complete bundle, and record it in the history.

        None when ``version`` is current already: nothing moves and nothing is recorded.
        Raises :class:`BundleError` for an unknown or incomplete version."""
        self.bundle(version)
        if version == self.current_version():
            return None
        return self._move_pointer(version, Action(action))

    def set_current(self, version: str) -> None:
        """:meth:`promote` (kept for callers from before the history)."""
        self.promote(version)

    def rollback(self) -> Change:
        """Promote :meth:`previous_version` (history: ``rollback``). Its own previous is then
        the version rolled back from, so a second rollback undoes the first."""
        current = self.current_version()
        target = self.previous_version()
        if target is None:
            if current is None:
                raise BundleError(
                    f"nothing to roll back: no current model in {self.root} (no `{POINTER}` "
                    "pointer); run `frontdesk train`, or `frontdesk models promote VERSION`"
                )
            raise BundleError(
                f"nothing to roll back to from {current} in {self.root}: no earlier complete "
                f"version (versions: {', '.join(self.versions())}); promote one by name with "
                "`frontdesk models promote VERSION`"
            )
        return self._move_pointer(target, Action.ROLLBACK)

    def _move_pointer(self, version: str, action: Action) -> Change:
        previous = self.current_version()
        tmp = self.root / f".{POINTER}.{uuid.uuid4().hex[:8]}.tmp"
        tmp.write_text(version + "\n", encoding="utf-8")
        os.replace(tmp, self.root / POINTER)
        change = Change(datetime.now(UTC), version, previous, action)
        # one write of one line in append mode: lines of concurrent writers do not interleave
        with (self.root / HISTORY).open("a", encoding="utf-8") as out:
            out.write(json.dumps(change.to_json()) + "\n")
        return change

    def history(self) -> list[Change]:
        """The moves of ``current``, oldest first; malformed lines are skipped (logged)."""
        try:
            text = (self.root / HISTORY).read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        changes = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                changes.append(Change.from_json(json.loads(line)))
            except (KeyError, TypeError, ValueError) as exc:
                log.warning(
                    "%s:%d: not a history line, skipped: %s", self.root / HISTORY, number, exc
                )
        return changes

    def previous_version(self) -> str | None:
        """Where :meth:`rollback` goes: the ``previous`` of the last history line, if that
        line moved the pointer to where it is and that version is still complete; otherwise
        (no history, a pointer moved by hand, a previous pruned) the newest complete version
        below the current one that the gate did not refuse. None without a current."""
        current = self.current_version()
        if current is None:
            return None
        changes = self.history()
        if changes:
            last = changes[-1]
            if (
                last.current == current
                and last.previous is not None
                and last.previous != current
                and self.is_complete(last.previous)
            ):
                return last.previous
        if not is_version(current):
            return None
        below = [
            v
            for v in self.versions()
            if _number(v) < _number(current)
            and self.is_complete(v)
            and self.gate_decision(v) != REFUSED
        ]
        return below[-1] if below else None

    def gate_decision(self, version: str) -> str | None:
        """The ``decision`` of ``version``'s ``gate.json``; None without a readable one."""
        path = self.root / version / GATE_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("%s: unreadable, ignored: %s", path, exc)
            return None
        decision = data.get("decision") if isinstance(data, dict) else None
        return decision if isinstance(decision, str) else None

    def states(self) -> dict[str, State]:
        """The :class:`State` of every version, oldest first."""
        current = self.current_version()
        previous = self.previous_version()
        ever_current = {c.current for c in self.history()}
        newer_than = _number(current) if current is not None and is_version(current) else -1
        states = {}
        for version in self.versions():
            if version == current:
                state = State.CURRENT
            elif version == previous:
                state = State.PREVIOUS
            elif self.gate_decision(version) == REFUSED:
                state = State.REFUSED
            elif version not in ever_current and _number(version) > newer_than:
                state = State.CANDIDATE
            else:
                state = State.RETIRED
            states[version] = state
        return states

    def state(self, version: str) -> State:
        """The :class:`State` of ``version``; raises :class:`BundleError` if unknown."""
        self.path_of(version)
        return self.states()[version]

    def describe(self) -> list[VersionInfo]:
        """Every version, oldest first, as ``frontdesk models list`` shows it."""
        states = self.states()
        sizes = disk_usage(self.root / v for v in states)
        return [
            self._info(v, state, size)
            for (v, state), size in zip(states.items(), sizes, strict=True)
        ]

    def _info(self, version: str, state: State, size: int) -> VersionInfo:
        path = self.root / version / MANIFEST
        manifest: Mapping[str, Any] = {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as exc:
            log.warning("%s: unreadable: %s", path, exc)
        else:
            manifest = data if isinstance(data, dict) else {}
        raw_metrics = manifest.get("metrics")
        metrics = {
            str(name): float(value)
            for name, value in (raw_metrics.items() if isinstance(raw_metrics, dict) else ())
            if isinstance(value, int | float) and not isinstance(value, bool)
        }

        def text(key: str) -> str | None:
            value = manifest.get(key)
            return value if isinstance(value, str) else None

        return VersionInfo(
            version=version,
            state=state,
            complete=path.is_file(),
            created_at=text("created_at"),
            bot=text("bot"),
            bot_digest=text("bot_digest"),
            metrics=metrics,
            gate=self.gate_decision(version),
            bytes_on_disk=size,
        )

    def prune(self, keep: int) -> list[str]:
        """Remove the version folders beyond the ``keep`` newest, except the current and the
        previous version (:meth:`previous_version`); staging folders are left alone.
        Returns the removed versions, oldest first. ``keep`` must be 1 or more."""
        if keep < 1:
            raise ValueError(f"keep must be 1 or more, got {keep}")
        versions = self.versions()
        spared = {self.current_version(), self.previous_version(), *versions[-keep:]}
        removed = [v for v in versions if v not in spared]
        for version in removed:
            # out of the versions' names first, so that a removal cut short leaves no
            # half-deleted version behind (only a hidden folder to delete by hand)
            doomed = self.root / f".pruned-{version}-{uuid.uuid4().hex[:8]}"
            os.replace(self.root / version, doomed)
            shutil.rmtree(doomed)
        return removed


def _files(folder: Path) -> Iterator[Path]:
    """The regular files under ``folder`` (links to files and folders not followed)."""
    for parent, _, names in os.walk(folder):
        for name in sorted(names):
            path = Path(parent, name)
            if path.is_file() and not path.is_symlink():
                yield path


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def share_identical(folder: Path, reference: Path) -> tuple[int, int]:
    """Replace each file of ``folder`` that is byte-identical to the file at the same
    relative path under ``reference`` by a hard link to that file (sizes compared first,
    then SHA-256). Returns the files and bytes now shared.

    A link goes to a temporary name in the file's folder, then ``os.replace``-s the file,
    so the path always holds a whole file. Where links cannot be made (another filesystem,
    one without hard links) the copies are kept and sharing stops there."""
    files = size = 0
    for path in _files(folder):
        other = reference / path.relative_to(folder)
        if not other.is_file() or other.is_symlink():
            continue
        ours, theirs = path.stat(), other.stat()
        if ours.st_size != theirs.st_size or (ours.st_dev, ours.st_ino) == (
            theirs.st_dev,
            theirs.st_ino,
        ):
            continue
        if _sha256(path) != _sha256(other):
            continue
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.link")
        try:
            os.link(other, tmp)
        except OSError as exc:
            log.info("cannot hard-link %s (%s): keeping copies", other, exc)
            break
        try:
            os.replace(tmp, path)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise
        files += 1
        size += ours.st_size
    return files, size


def disk_usage(folders: Iterable[Path]) -> list[int]:
    """The bytes of each folder's files, in order; a file linked into several folders (or
    twice into one) counts once, in the first."""
    seen: set[tuple[int, int]] = set()
    sizes = []
    for folder in folders:
        total = 0
        for path in _files(folder):
            stat = path.stat()
            if (stat.st_dev, stat.st_ino) not in seen:
                seen.add((stat.st_dev, stat.st_ino))
                total += stat.st_size
        sizes.append(total)
    return sizes


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
